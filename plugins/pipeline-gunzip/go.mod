module github.com/wasmpod/wasmpod/plugins/pipeline-gunzip

go 1.24
