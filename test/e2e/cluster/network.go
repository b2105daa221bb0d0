package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// NodeIPEnv names the address reports-server should listen on, instead of the one the harness
// finds or adds; the value "add" makes the harness add one even if the machine has one.
const NodeIPEnv = "REPORTS_E2E_NODE_IP"

// localAddressPrefix is where the address the harness adds when the machine has none comes from:
// 10.255.0.0/16, outside the service range below, with the last two bytes from the process id so
// that concurrent runs do not remove each other's address.
const localAddressPrefix = "10.255."

// nodeAddress returns a non-loopback address of this machine that reports-server can listen on.
//
// Why: kube-apiserver reaches an aggregated API server through its Service. With
// --enable-aggregator-routing=true (there is no kube-proxy here) it dials an address of the
// Service's EndpointSlices, and EndpointSlice validation refuses loopback and link-local
// addresses. So the server must listen on an address the slice may hold: the first global
// unicast address of an interface that is up, or, failing that (as root), one the harness adds
// for the run (see addLocalAddress). cleanup removes it.
func nodeAddress(logf func(string, ...any)) (ip net.IP, cleanup func(), err error) {
	cleanup = func() {}
	s := os.Getenv(NodeIPEnv)
	if s != "" && s != "add" {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, cleanup, fmt.Errorf("%s=%q is not an IP address", NodeIPEnv, s)
		}
		return ip, cleanup, checkListen(ip)
	}
	if ip := firstGlobalAddress(); ip != nil && s != "add" {
		if err := checkListen(ip); err == nil {
			return ip, cleanup, nil
		}
	}
	ip, cleanup, where, err := addLocalAddress()
	if err != nil {
		return nil, func() {}, fmt.Errorf("reports-server needs a non-loopback, non-link-local address to listen on "+
			"(kube-apiserver dials the Service's EndpointSlice addresses, and EndpointSlice validation refuses "+
			"loopback ones); this machine has no interface with one, and adding one failed (that needs root or "+
			"CAP_NET_ADMIN). Give the machine an address or set %s to one that is configured: %w", NodeIPEnv, err)
	}
	logf("no usable address on the machine's interfaces: added %s on %s for this run", ip, where)
	if err := checkListen(ip); err != nil {
		cleanup()
		return nil, func() {}, err
	}
	return ip, cleanup, nil
}

func firstGlobalAddress() net.IP {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var v6 net.IP
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipnet, ok := a.(*net.IPNet)
			if !ok || !ipnet.IP.IsGlobalUnicast() {
				continue
			}
			if ip4 := ipnet.IP.To4(); ip4 != nil {
				return ip4
			}
			if v6 == nil {
				v6 = ipnet.IP
			}
		}
	}
	return v6
}

// addLocalAddress adds an address of 10.255.0.0/16 to this machine: on a dummy interface named
// after the process, or, where the kernel has no dummy interfaces (e.g. minimal VM kernels), as a
// second address of the loopback interface, which EndpointSlice validation accepts because it
// checks the address, not the interface. It returns the address, how to remove it and where it is.
func addLocalAddress() (net.IP, func(), string, error) {
	pid := os.Getpid()
	ip := net.ParseIP(fmt.Sprintf("%s%d.%d", localAddressPrefix, (pid>>8)%256, 1+pid%254)).To4()
	cidr := ip.String() + "/32"
	run := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}

	name := "rse2e" + strconv.Itoa(pid)
	if len(name) > 15 {
		name = name[:15]
	}
	dummyErr := run("link", "add", name, "type", "dummy")
	if dummyErr == nil {
		cleanup := func() { _ = run("link", "del", name) }
		if err := errors.Join(run("addr", "add", cidr, "dev", name), run("link", "set", name, "up")); err != nil {
			cleanup()
			return nil, nil, "", err
		}
		return ip, cleanup, "dummy interface " + name, nil
	}
	if err := run("addr", "add", cidr, "dev", "lo"); err != nil {
		return nil, nil, "", errors.Join(dummyErr, err)
	}
	return ip, func() { _ = run("addr", "del", cidr, "dev", "lo") }, "the loopback interface", nil
}

func checkListen(ip net.IP) error {
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", ip, err)
	}
	return l.Close()
}

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
