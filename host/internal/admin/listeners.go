package admin

import (
	"net"

	"github.com/wasmpod/wasmpod/host/internal/listener"
)

// resilient wraps ln so that accept errors (EMFILE) never stop the server for good, and
// remembers it so /readyz reports it while it cannot accept.
func (s *Server) resilient(name string, ln net.Listener) net.Listener {
	l := listener.Wrap(ln, name, s.log)
	s.lnMu.Lock()
	s.lns = append(s.lns, l)
	s.lnMu.Unlock()
	return l
}

// listenersDown says which served listeners cannot accept connections now.
func (s *Server) listenersDown() []string {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	var down []string
	for _, l := range s.lns {
		if ok, why := l.Down(); ok {
			down = append(down, why)
		}
	}
	return down
}
