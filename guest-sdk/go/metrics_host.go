package wasmpod

import "github.com/wasmpod/wasmpod/guest-sdk/go/internal/core"

func define(kind int32, name, help string) int32 {
	id := core.MetricDefine(kind, name, help)
	if id < 0 {
		panic(&MetricError{Name: name, Code: id})
	}
	return id
}

func recordMetric(id int32, v float64) { core.MetricRecord(id, v) }
