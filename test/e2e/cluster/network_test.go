package cluster

import (
	"net"
	"os"
	"testing"
)

// TestAddLocalAddress checks the fallback for machines without a usable address: the address is
// configured, can be listened on and is gone after cleanup. It needs root.
func TestAddLocalAddress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to add an address")
	}
	ip, cleanup, where, err := addLocalAddress()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("added %s on %s", ip, where)
	if err := checkListen(ip); err != nil {
		cleanup()
		t.Fatal(err)
	}
	cleanup()
	if l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0")); err == nil {
		l.Close()
		t.Errorf("%s is still configured after cleanup", ip)
	}
}
