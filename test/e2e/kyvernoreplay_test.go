package e2e

import (
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// KyvernoReplayEnv names a built hack/kyverno-aggregation binary; TestKyvernoAggregationReplay
// skips without it. KyvernoReplayCountEnv is its number of resources (2000 unless set).
const (
	KyvernoReplayEnv      = "REPORTS_E2E_KYVERNO_REPLAY"
	KyvernoReplayCountEnv = "REPORTS_E2E_KYVERNO_REPLAY_N"
)

// TestKyvernoAggregationReplay replays Kyverno's report aggregation calls (hack/kyverno-aggregation)
// through kube-apiserver's aggregation to two reports-server replicas (ReplicasEnv to change), as
// Kyverno reaches them in TestKyvernoAtScale, and logs the tool's latencies and rates (docs/benchmarks.md, "Kyverno at
// scale"): compared with the same replay against a standalone server, they show what the
// aggregation path adds per request. A measurement, opt-in; it asserts only that the replay ran.
func TestKyvernoAggregationReplay(t *testing.T) {
	bin := os.Getenv(KyvernoReplayEnv)
	if bin == "" {
		t.Skipf("set %s to a built hack/kyverno-aggregation (go build -o /tmp/kagg ./hack/kyverno-aggregation)", KyvernoReplayEnv)
	}
	n := 2000
	if raw := os.Getenv(KyvernoReplayCountEnv); raw != "" {
		var err error
		if n, err = strconv.Atoi(raw); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a number of resources", KyvernoReplayCountEnv, raw)
		}
	}
	replicas := replicasFromEnv(t) // two unless set, as in TestKyvernoAtScale
	if replicas == 0 {
		replicas = 2
	}
	c := startClusterWith(t, cluster.Options{Replicas: replicas})
	out, err := exec.Command(bin, "-kubeconfig", c.AdminKubeconfig, "-n", strconv.Itoa(n), "-owners").CombinedOutput()
	t.Logf("%s -n %d through kube-apiserver, %d replicas:\n%s", bin, n, replicas, out)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
}
