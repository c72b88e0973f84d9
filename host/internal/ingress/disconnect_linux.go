package ingress

import "golang.org/x/sys/unix"

// fdPeerGone reports whether the TCP connection on fd has left the established state (the
// peer sent FIN or RST), whatever unread bytes wait in the receive buffer (a TLS client's
// close_notify, a pipelined request). For other sockets it peeks.
func fdPeerGone(fd int) bool {
	if info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
		return info.State != unix.BPF_TCP_ESTABLISHED
	}
	return peekGone(fd)
}
