module github.com/wasmpod/wasmpod/plugins/pipeline-wc

go 1.24
