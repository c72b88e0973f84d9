module github.com/wasmpod/wasmpod/runtime/testdata/cmdguest

go 1.26
