module github.com/wasmpod/wasmpod/host/testdata/stagecmd

go 1.24
