//go:build unix && !linux

package ingress

// fdPeerGone reports whether the peer of the socket fd has closed it (see peekGone).
func fdPeerGone(fd int) bool { return peekGone(fd) }
