module github.com/wasmpod/wasmpod/plugins/pipeline-sum

go 1.24
