module github.com/wasmpod/wasmpod/guest-sdk/go

go 1.24
