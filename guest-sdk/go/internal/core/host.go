package core

// Log writes one line to the module's log sink (levels: 0 debug, 1 info, 2 warn, 3 error).
func Log(level int32, msg string) { hostLog(level, msg) }

// SetError attaches msg to the current call's failure.
func SetError(msg string) { hostError(msg) }

// ConfigGet looks up key in the module's config map.
func ConfigGet(key string) (string, bool) {
	var small [256]byte
	b := small[:]
	for {
		n := hostConfigGet(key, b)
		if n < 0 {
			return "", false
		}
		if int(n) <= len(b) {
			return string(b[:n]), true
		}
		b = make([]byte, n) // too small: ask again with room for the whole value
	}
}

// MetricDefine defines (or finds) a metric and returns its id, or a negative error code.
func MetricDefine(kind int32, name, help string) int32 { return hostMetricDefine(kind, name, help) }

// MetricRecord records value on metric id.
func MetricRecord(id int32, value float64) { hostMetricRecord(id, value) }

// Scale asks the host to grow or shrink the warm instance pool.
func Scale(delta int32) int32 { return hostScale(delta) }
