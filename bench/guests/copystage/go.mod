module github.com/wasmpod/wasmpod/bench/guests/copystage

go 1.24
