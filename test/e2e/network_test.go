package e2e

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// testNetworkNamespace proves the rule the harness exists to keep: the cluster runs in a network
// namespace that is not the one the test binary started in, and the machine's interfaces gained
// no address (NodeIP exists only inside the namespace).
func testNetworkNamespace(t *testing.T, c *cluster.Cluster) {
	own, err := cluster.NetNS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if own == network.OriginalNetNS {
		t.Fatalf("the tests run in the machine's network namespace %s", own)
	}
	procs := []*cluster.Process{c.Etcd, c.APIServer, c.ControllerManager}
	for _, r := range c.ReportsServers {
		procs = append(procs, r.Process)
	}
	for _, p := range procs {
		ns, err := cluster.NetNS(p.Pid())
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if ns != own {
			t.Errorf("%s runs in network namespace %s, the tests in %s", p.Name, ns, own)
		}
	}

	host, err := network.HostAddresses()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(host, network.HostAddrs) {
		t.Errorf("the machine's addresses changed while the cluster runs:\nbefore: %s\nnow:    %s",
			strings.Join(network.HostAddrs, " "), strings.Join(host, " "))
	}
	for _, a := range host {
		if strings.Contains(a, " "+cluster.NodeIP+"/") {
			t.Errorf("the machine has the namespace's address: %s", a)
		}
	}
	if c.NodeIP.String() != cluster.NodeIP {
		t.Errorf("reports-server listens on %s, not on the namespace's %s", c.NodeIP, cluster.NodeIP)
	}
	t.Logf("cluster in %s (the machine's: %s); machine addresses unchanged: %s", own, network.OriginalNetNS, strings.Join(host, ", "))
}
