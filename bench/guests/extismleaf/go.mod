module github.com/wasmpod/wasmpod/bench/guests/extismleaf

go 1.24

require github.com/extism/go-pdk v1.1.3
