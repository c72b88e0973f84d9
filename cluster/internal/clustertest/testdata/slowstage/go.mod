module github.com/wasmpod/wasmpod/cluster/internal/clustertest/testdata/slowstage

go 1.26
