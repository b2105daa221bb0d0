package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/reports-server/reports-server/internal/apis/reports"
	"github.com/reports-server/reports-server/test/e2e/cluster"
)

// ReplicasEnv sets how many reports-server replicas run behind the Service; by default as many
// as the Deployment of deploy/manifests has.
const ReplicasEnv = "REPORTS_E2E_REPLICAS"

func replicasFromEnv(t *testing.T) int {
	t.Helper()
	s := os.Getenv(ReplicasEnv)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", ReplicasEnv, s)
	}
	return n
}

// servedRequests is how many requests for kind the replica has answered, by its own
// apiserver_request_total metric, read from the replica directly (not through kube-apiserver).
func servedRequests(ctx context.Context, c *cluster.Cluster, r *cluster.Replica, k reports.Kind) (float64, error) {
	client, err := kubernetes.NewForConfig(c.ReplicaConfig(r, nil))
	if err != nil {
		return 0, err
	}
	body, err := client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("GET /metrics of %s: %w", r.Name, err)
	}
	var total float64
	group, resource := `group="`+k.GroupVersion.Group+`"`, `resource="`+k.Resource+`"`
	for _, line := range strings.Split(string(body), "\n") {
		labels, value, ok := strings.Cut(line, "} ")
		if !ok || !strings.HasPrefix(labels, "apiserver_request_total{") ||
			!strings.Contains(labels, group) || !strings.Contains(labels, resource) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, fmt.Errorf("metrics of %s: %q: %w", r.Name, line, err)
		}
		total += v
	}
	return total, nil
}

// servedByEach is servedRequests of every replica.
func servedByEach(t *testing.T, c *cluster.Cluster, k reports.Kind) []float64 {
	t.Helper()
	ctx := testContext(t, time.Minute)
	counts := make([]float64, len(c.ReportsServers))
	for i, r := range c.ReportsServers {
		n, err := servedRequests(ctx, c, r, k)
		if err != nil {
			t.Fatal(err)
		}
		counts[i] = n
	}
	return counts
}

// logRecord is one line of a reports-server log written with log/slog: its message and its
// key=value attributes (the last value of a repeated key, unquoted).
type logRecord struct {
	msg   string
	attrs map[string]string
}

// logRecords returns the lines of log whose message is msg, with their attributes. The server
// sends slog through klog (component-base's logging options), whose text format quotes the
// message and string values: I1125 00:50:26.123456 1234 file.go:12] "msg" key="value" n=1;
// slog's own text format, msg key=value, is understood too.
func logRecords(log, msg string) []logRecord {
	var out []logRecord
	for _, line := range strings.Split(log, "\n") {
		_, rest, ok := strings.Cut(line, " "+strconv.Quote(msg))
		if !ok {
			_, rest, ok = strings.Cut(line, " "+msg)
		}
		if !ok || (rest != "" && rest[0] != ' ') {
			continue
		}
		rec := logRecord{msg: msg, attrs: map[string]string{}}
		for _, field := range splitAttrs(rest) {
			if k, v, ok := strings.Cut(field, "="); ok {
				if uq, err := strconv.Unquote(v); err == nil {
					v = uq
				}
				rec.attrs[k] = v
			}
		}
		out = append(out, rec)
	}
	return out
}

// splitAttrs splits slog's text attributes at spaces outside quoted values.
func splitAttrs(s string) []string {
	var fields []string
	var cur strings.Builder
	quoted, escaped := false, false
	for _, r := range s {
		switch {
		case escaped:
			escaped = false
		case r == '\\' && quoted:
			escaped = true
		case r == '"':
			quoted = !quoted
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				fields = append(fields, cur.String())
				cur.Reset()
			}
			continue
		}
		cur.WriteRune(r)
	}
	if cur.Len() > 0 {
		fields = append(fields, cur.String())
	}
	return fields
}

// runLog is what r has logged since it was last started.
func runLog(t *testing.T, r *cluster.Replica) string {
	t.Helper()
	log, err := r.RunLog()
	if err != nil {
		t.Fatalf("log of %s: %v", r.Name, err)
	}
	return log
}
