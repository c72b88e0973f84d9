//go:build !wasip1

package core

// What package wasmpodtest needs to play the host natively: locked access to the FakeHost and
// a registry of the export functions, which each package registers off wasip1 (on wasip1 the
// functions are reached through their go:wasmexport wrappers instead).

var exports = map[string]any{}

// Register records fn as the body of the export called name (e.g. "wasmpod_leaf"). Packages
// call it from init functions, so it needs no lock.
func Register(name string, fn any) { exports[name] = fn }

// Export returns the function registered for name, or nil.
func Export(name string) any { return exports[name] }

// Reset forgets logs, errors, config and recorded metric values and restores the scaling
// defaults. Metric definitions are kept: plugin code holds their ids.
func (h *FakeHost) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Logs, h.Errors = nil, nil
	h.Config = map[string]string{}
	h.Values = map[int32][]float64{}
	h.ScaleTarget, h.ScaleAllow = 1, true
}

// SetConfig sets key to value in the config map.
func (h *FakeHost) SetConfig(key, value string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Config[key] = value
}

// DeleteConfig removes key from the config map.
func (h *FakeHost) DeleteConfig(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.Config, key)
}

// LogLines returns a copy of the log lines; with take it also forgets them.
func (h *FakeHost) LogLines(take bool) []LogLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := append([]LogLine(nil), h.Logs...)
	if take {
		h.Logs = nil
	}
	return out
}

// ErrorCount returns how many error messages are recorded.
func (h *FakeHost) ErrorCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.Errors)
}

// ErrorsFrom returns a copy of the error messages from index i on.
func (h *FakeHost) ErrorsFrom(i int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i < 0 || i >= len(h.Errors) {
		return nil
	}
	return append([]string(nil), h.Errors[i:]...)
}

// TakeErrors returns the error messages and forgets them.
func (h *FakeHost) TakeErrors() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.Errors
	h.Errors = nil
	return out
}

// MetricState is a defined metric with the values recorded on it.
type MetricState struct {
	Metric
	Values []float64
}

// MetricStates returns every defined metric with a copy of its values, in definition order.
func (h *FakeHost) MetricStates() []MetricState {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]MetricState, len(h.Metrics))
	for i, m := range h.Metrics {
		out[i] = MetricState{m, append([]float64(nil), h.Values[int32(i)]...)}
	}
	return out
}

// SetScale sets the pool's target size and whether scaling is allowed.
func (h *FakeHost) SetScale(target int32, allow bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ScaleTarget, h.ScaleAllow = target, allow
}

// ScaleState returns the pool's target size and whether scaling is allowed.
func (h *FakeHost) ScaleState() (int32, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ScaleTarget, h.ScaleAllow
}
