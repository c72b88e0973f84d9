//go:build !wasip1

package net

// CloseAll closes every open connection (wasmpodtest.Reset calls it before replacing Host).
func (h *FakeHost) CloseAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for hd, c := range h.conns {
		c.Close()
		delete(h.conns, hd)
	}
}
