module longerr

go 1.24

require github.com/wasmpod/wasmpod/guest-sdk/go v0.0.0

replace github.com/wasmpod/wasmpod/guest-sdk/go => ../../../../../../guest-sdk/go
