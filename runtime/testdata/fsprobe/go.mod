module github.com/wasmpod/wasmpod/runtime/testdata/fsprobe

go 1.26

require github.com/wasmpod/wasmpod/guest-sdk/go v0.0.0

replace github.com/wasmpod/wasmpod/guest-sdk/go => ../../../guest-sdk/go
