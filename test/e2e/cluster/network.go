package cluster

import (
	"fmt"
	"net"
)

// freePort returns a TCP port that was free on ip a moment ago. Components are given ports on
// their command line, so there is a short window in which another process could take it; the
// readiness checks then fail with the component's log, which says so.
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// checkListen fails unless this process can listen on ip.
func checkListen(ip net.IP) error {
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", ip, err)
	}
	return l.Close()
}
