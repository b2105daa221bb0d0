package analytics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// resultColumns are the published columns of reporting.results, in order.
var resultColumns = []string{
	"cluster", "report_api_group", "report_api_version", "report_kind", "report_namespace", "report_name",
	"report_uid", "result_index", "source", "policy", "rule", "category", "severity", "result", "finding",
	"scored", "message", "timestamp", "namespace", "resource_api_version", "resource_kind",
	"resource_namespace", "resource_name", "resource_uid", "resources", "properties", "score",
}

// row is one result row: column name to normalized value (see norm).
type row map[string]string

func (r row) String() string {
	parts := make([]string, len(resultColumns))
	for i, c := range resultColumns {
		parts[i] = c + "=" + r[c]
	}
	return strings.Join(parts, " ")
}

// storedReport is one row of the private reports table, decoded.
type storedReport struct {
	cluster, key string
	obj          map[string]any
}

// storedReports reads every stored report (as the owner: the test plays the server).
func storedReports(ctx context.Context, t testing.TB, pool *pgxpool.Pool) []storedReport {
	t.Helper()
	rows, err := pool.Query(ctx, "SELECT cluster, key, object::text FROM reports ORDER BY cluster, key")
	if err != nil {
		t.Fatal(err)
	}
	type raw struct{ Cluster, Key, Object string }
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[raw])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]storedReport, 0, len(all))
	for _, r := range all {
		dec := json.NewDecoder(strings.NewReader(r.Object))
		dec.UseNumber()
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			t.Fatal(err)
		}
		out = append(out, storedReport{cluster: r.Cluster, key: r.Key, obj: obj})
	}
	return out
}

// oracleResults flattens the stored reports in Go, following the rules of docs/sql.md: an
// implementation independent of analytics_flatten, for the projection to be compared with.
func oracleResults(reps []storedReport) []row {
	var out []row
	for _, rep := range reps {
		out = append(out, flattenGo(rep)...)
	}
	return out
}

var (
	plainNumber = regexp.MustCompile(`^\s*[0-9]{1,6}(\.[0-9]{1,20})?\s*$`)
)

func flattenGo(rep storedReport) []row {
	obj := rep.obj
	md := asMap(obj["metadata"])
	reportNS := ""
	if s, ok := md["namespace"].(string); ok {
		reportNS = s
	}
	results, ok := obj["results"].([]any)
	if !ok {
		results, _ = asMap(obj["spec"])["results"].([]any)
	}
	// The report-level subject: scope, else a spec.owner with a name, else an ownerReference (the
	// controller one first), else Kyverno's audit.kyverno.io/resource.* labels and annotations.
	var subject map[string]any
	withNS := func(m map[string]any) map[string]any {
		c := map[string]any{}
		for k, v := range m {
			c[k] = v
		}
		c["namespace"] = md["namespace"]
		return c
	}
	owner, _ := asMap(obj["spec"])["owner"].(map[string]any)
	labels, annotations := asMap(md["labels"]), asMap(md["annotations"])
	if sc, ok := obj["scope"].(map[string]any); ok {
		subject = sc
	} else if name, _ := owner["name"].(string); name != "" {
		subject = withNS(owner)
	} else if refs, ok := md["ownerReferences"].([]any); ok && len(refs) > 0 {
		for _, r := range refs {
			if m, ok := r.(map[string]any); ok && (subject == nil || m["controller"] == true) {
				subject = withNS(m)
				if m["controller"] == true {
					break
				}
			}
		}
	} else if labels["audit.kyverno.io/resource.uid"] != nil || annotations["audit.kyverno.io/resource.name"] != nil {
		subject = map[string]any{}
		apiVersion, _ := labels["audit.kyverno.io/resource.version"].(string)
		if g, _ := labels["audit.kyverno.io/resource.group"].(string); g != "" {
			apiVersion = g + "/" + apiVersion
		}
		for k, v := range map[string]any{
			"apiVersion": apiVersion, "kind": labels["audit.kyverno.io/resource.kind"],
			"name": annotations["audit.kyverno.io/resource.name"], "uid": labels["audit.kyverno.io/resource.uid"],
			"namespace": annotations["audit.kyverno.io/resource.namespace"],
		} {
			if v != nil {
				subject[k] = v
			}
		}
		if subject["namespace"] == nil && reportNS != "" {
			subject["namespace"] = reportNS
		}
	}
	var rows []row
	for i, r := range results {
		res := asMap(r)
		props, _ := res["properties"].(map[string]any)
		subj := subject
		if list, ok := res["resources"].([]any); ok && len(list) > 0 {
			if first, ok := list[0].(map[string]any); ok {
				subj = first
			}
		}
		source := text(res["source"])
		if source == nil || *source == "" {
			source = text(obj["source"])
		}
		severity := text(res["severity"])
		if severity == nil && props != nil {
			severity = text(props["severity"])
		}
		if severity != nil {
			s := strings.ToLower(*severity)
			severity = &s
		}
		result := text(res["result"])
		finding := result == nil || *result == "fail" || *result == "warn" || *result == "error"
		var scored any
		if b, ok := res["scored"].(bool); ok {
			scored = b
		}
		ns := reportNS
		if s := text(subj["namespace"]); s != nil && *s != "" {
			ns = *s
		}
		var resources any
		if list, ok := res["resources"].([]any); ok {
			resources = list
		}
		var propsVal any
		if props != nil {
			propsVal = props
		}
		row := row{
			"cluster":              rep.cluster,
			"report_api_group":     strings.Split(rep.key, "/")[1],
			"report_api_version":   normPtr(text(obj["apiVersion"])),
			"report_kind":          normPtr(text(obj["kind"])),
			"report_namespace":     reportNS,
			"report_name":          normPtr(text(md["name"])),
			"report_uid":           normPtr(text(md["uid"])),
			"result_index":         strconv.Itoa(i),
			"source":               normPtr(source),
			"policy":               normPtr(text(res["policy"])),
			"rule":                 normPtr(text(res["rule"])),
			"category":             normPtr(text(res["category"])),
			"severity":             normPtr(severity),
			"result":               normPtr(result),
			"finding":              norm(finding),
			"scored":               norm(scored),
			"message":              normPtr(text(res["message"])),
			"timestamp":            norm(timestampGo(asMap(res["timestamp"]))),
			"namespace":            ns,
			"resource_api_version": normPtr(text(subj["apiVersion"])),
			"resource_kind":        normPtr(text(subj["kind"])),
			"resource_namespace":   normPtr(text(subj["namespace"])),
			"resource_name":        normPtr(text(subj["name"])),
			"resource_uid":         normPtr(text(subj["uid"])),
			"resources":            norm(resources),
			"properties":           norm(propsVal),
			"score":                norm(scoreGo(props)),
		}
		rows = append(rows, row)
	}
	return rows
}

// timestampGo is {seconds, nanos} as the docs define it (nil when invalid).
func timestampGo(ts map[string]any) any {
	sec, ok := ts["seconds"].(json.Number)
	if !ok {
		return nil
	}
	f, err := strconv.ParseFloat(sec.String(), 64)
	if err != nil || f < -62135596800 || f > 253402300799 {
		return nil
	}
	t := time.Unix(int64(math.Trunc(f)), 0)
	if n, ok := ts["nanos"].(json.Number); ok {
		if ns, err := strconv.ParseInt(n.String(), 10, 64); err == nil && ns >= -999999999 && ns <= 999999999 {
			// Rounded to microseconds, halves away from zero (numeric round).
			us, rem := ns/1000, ns%1000
			if rem >= 500 {
				us++
			} else if rem <= -500 {
				us--
			}
			t = t.Add(time.Duration(us) * time.Microsecond)
		}
	}
	return t
}

// scoreGo is the score property, else the highest <vendor>.v3_score (nil when none is a number).
func scoreGo(props map[string]any) any {
	parse := func(v any) (float64, bool) {
		s := text(v)
		if s == nil || !plainNumber.MatchString(*s) {
			return 0, false
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(*s), 64)
		return f, err == nil
	}
	if f, ok := parse(props["score"]); ok {
		return f
	}
	var best any
	for k, v := range props {
		if !strings.HasSuffix(k, ".v3_score") {
			continue
		}
		if f, ok := parse(v); ok && (best == nil || f > best.(float64)) {
			best = f
		}
	}
	return best
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// text is v as ->> gives it: strings as they are, numbers and booleans as JSON, nil otherwise.
func text(v any) *string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		s = x.String()
	case bool:
		s = strconv.FormatBool(x)
	default:
		return nil
	}
	return &s
}

func normPtr(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

// norm renders a value read from PostgreSQL (or computed by the oracle) in one canonical form.
func norm(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int16:
		return strconv.FormatInt(int64(x), 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 64)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		return x.UTC().Format("2006-01-02T15:04:05.000000Z")
	case pgtype.Numeric:
		f, err := x.Float64Value()
		if err != nil || !f.Valid {
			return "NULL"
		}
		return strconv.FormatFloat(f.Float64, 'g', -1, 64)
	case json.Number:
		f, _ := x.Float64()
		return strconv.FormatFloat(f, 'g', -1, 64)
	case map[string]any, []any:
		// Canonical JSON: through any, so json.Number and float64 agree; maps sort their keys.
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		var back any
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&back); err != nil {
			return string(b)
		}
		b, _ = json.Marshal(back)
		return string(b)
	default:
		return fmt.Sprint(x)
	}
}

// readResults reads reporting.results as the reader role.
func readResults(ctx context.Context, t testing.TB, pool *pgxpool.Pool) []row {
	t.Helper()
	var out []row
	asReader(ctx, t, pool, func(tx pgx.Tx) {
		cols, rows := queryRows(ctx, t, tx, "SELECT "+strings.Join(quoteAll(resultColumns), ", ")+" FROM reporting.results")
		for _, r := range rows {
			m := row{}
			for i, c := range cols {
				m[c] = r[i]
			}
			out = append(out, m)
		}
	})
	return out
}

func quoteAll(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = pgx.Identifier{c}.Sanitize()
	}
	return out
}

// diffRows compares two multisets of rows and describes the difference (empty when equal).
func diffRows(want, got []row) string {
	count := map[string]int{}
	for _, r := range want {
		count[r.String()]++
	}
	for _, r := range got {
		count[r.String()]--
	}
	var missing, extra []string
	for k, n := range count {
		for ; n > 0; n-- {
			missing = append(missing, k)
		}
		for ; n < 0; n++ {
			extra = append(extra, k)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	sort.Strings(missing)
	sort.Strings(extra)
	var b strings.Builder
	fmt.Fprintf(&b, "%d rows expected, %d found\n", len(want), len(got))
	for i, m := range missing {
		if i == 5 {
			fmt.Fprintf(&b, "  … %d more missing\n", len(missing)-5)
			break
		}
		b.WriteString("- " + m + "\n")
	}
	for i, x := range extra {
		if i == 5 {
			fmt.Fprintf(&b, "  … %d more unexpected\n", len(extra)-5)
			break
		}
		b.WriteString("+ " + x + "\n")
	}
	return b.String()
}
