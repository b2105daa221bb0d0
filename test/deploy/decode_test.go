package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"sigs.k8s.io/yaml"
)

// repoRoot is the checkout this module lives in (test/deploy → ../..).
var repoRoot = filepath.Join("..", "..")

var (
	scheme = newScheme()
	// strict makes unknown and duplicate fields decoding errors.
	strict = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
)

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(policyv1.AddToScheme(s))
	utilruntime.Must(apiregistrationv1.AddToScheme(s))
	return s
}

// object is one decoded manifest document.
type object struct {
	source string // file or chart template, for messages
	gvk    schema.GroupVersionKind
	// typed is the decoded object for kinds in the scheme, nil for the kinds checked as
	// unstructured (unstructuredKinds).
	typed runtime.Object
	u     *unstructured.Unstructured
}

func (o object) String() string {
	id := o.gvk.Kind + " " + o.u.GetName()
	if ns := o.u.GetNamespace(); ns != "" {
		id += " in " + ns
	}
	return id + " (" + o.source + ")"
}

// unstructuredKinds are the kinds outside the scheme that the chart may render, each with a
// check of its required fields and of the field names it may use.
var unstructuredKinds = map[schema.GroupVersionKind]func(*unstructured.Unstructured) error{
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}: checkServiceMonitor,
	{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}:          checkCertificate,
	{Group: "cert-manager.io", Version: "v1", Kind: "Issuer"}:               checkIssuer,
}

// decodeDocuments splits a multi-document YAML stream and decodes every non-empty document
// strictly.
func decodeDocuments(source string, data []byte) ([]object, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []object
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: split documents: %w", source, err)
		}
		if isEmptyDocument(doc) {
			continue
		}
		src := source
		if m := sourceComment.FindSubmatch(doc); m != nil {
			src = string(m[1])
		}
		obj, err := decodeStrict(src, doc)
		if err != nil {
			return nil, err
		}
		objs = append(objs, obj)
	}
}

// sourceComment is the "# Source: chart/templates/x.yaml" line Helm puts before each document.
var sourceComment = regexp.MustCompile(`(?m)^# Source: (\S+)`)

func isEmptyDocument(doc []byte) bool {
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line != "---" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

// decodeStrict decodes one document into its typed object; unknown fields, duplicate fields and
// kinds that are neither in the scheme nor in unstructuredKinds are errors.
func decodeStrict(source string, doc []byte) (object, error) {
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return object{}, fmt.Errorf("%s: %w", source, err)
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(data, &u.Object); err != nil {
		return object{}, fmt.Errorf("%s: %w", source, err)
	}
	gvk := u.GroupVersionKind()
	obj := object{source: source, gvk: gvk, u: u}
	if u.GetName() == "" {
		return obj, fmt.Errorf("%s: %s without metadata.name", source, gvk.Kind)
	}
	if scheme.Recognizes(gvk) {
		typed, got, err := strict.Decode(data, nil, nil)
		if err != nil {
			return obj, fmt.Errorf("%s: %s %s: %w", source, gvk.Kind, u.GetName(), err)
		}
		if *got != gvk {
			return obj, fmt.Errorf("%s: decoded %v, want %v", source, *got, gvk)
		}
		obj.typed = typed
		return obj, nil
	}
	check, ok := unstructuredKinds[gvk]
	if !ok {
		return obj, fmt.Errorf("%s: unknown kind %v", source, gvk)
	}
	if err := check(u); err != nil {
		return obj, fmt.Errorf("%s: %s %s: %w", source, gvk.Kind, u.GetName(), err)
	}
	return obj, nil
}

func decodeFile(t *testing.T, path string) []object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeDocuments(filepath.ToSlash(path), data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// checkFields fails on keys of m outside allowed and on missing required keys.
func checkFields(path string, m map[string]any, allowed, required []string) error {
	var errs []error
	for k := range m {
		if !contains(allowed, k) && !contains(required, k) {
			errs = append(errs, fmt.Errorf("%s: unknown field %q", path, k))
		}
	}
	for _, k := range required {
		if _, ok := m[k]; !ok {
			errs = append(errs, fmt.Errorf("%s: missing required field %q", path, k))
		}
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func mapAt(u *unstructured.Unstructured, fields ...string) (map[string]any, error) {
	m, found, err := unstructured.NestedMap(u.Object, fields...)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("missing %s", strings.Join(fields, "."))
	}
	return m, nil
}

var metadataFields = []string{"name", "namespace", "labels", "annotations"}

// checkServiceMonitor checks the fields of a monitoring.coreos.com/v1 ServiceMonitor the chart
// uses against the Prometheus Operator's API.
func checkServiceMonitor(u *unstructured.Unstructured) error {
	if err := checkFields("", u.Object, nil, []string{"apiVersion", "kind", "metadata", "spec"}); err != nil {
		return err
	}
	spec, err := mapAt(u, "spec")
	if err != nil {
		return err
	}
	if err := checkFields("spec", spec, []string{"namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels", "sampleLimit"}, []string{"selector", "endpoints"}); err != nil {
		return err
	}
	endpoints, ok := spec["endpoints"].([]any)
	if !ok || len(endpoints) == 0 {
		return errors.New("spec.endpoints: want a non-empty list")
	}
	for i, e := range endpoints {
		ep, ok := e.(map[string]any)
		if !ok {
			return fmt.Errorf("spec.endpoints[%d]: not an object", i)
		}
		path := fmt.Sprintf("spec.endpoints[%d]", i)
		if err := checkFields(path, ep, []string{"scheme", "path", "interval", "scrapeTimeout", "bearerTokenFile", "authorization", "tlsConfig", "honorLabels", "relabelings", "metricRelabelings"}, []string{"port"}); err != nil {
			return err
		}
		if tls, ok := ep["tlsConfig"].(map[string]any); ok {
			if err := checkFields(path+".tlsConfig", tls, []string{"ca", "cert", "keySecret", "serverName", "insecureSkipVerify", "caFile", "certFile", "keyFile"}, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkCertificate checks a cert-manager.io/v1 Certificate.
func checkCertificate(u *unstructured.Unstructured) error {
	spec, err := mapAt(u, "spec")
	if err != nil {
		return err
	}
	if err := checkFields("spec", spec, []string{"isCA", "commonName", "dnsNames", "duration", "renewBefore", "usages", "privateKey"}, []string{"secretName", "issuerRef"}); err != nil {
		return err
	}
	ref, err := mapAt(u, "spec", "issuerRef")
	if err != nil {
		return err
	}
	if err := checkFields("spec.issuerRef", ref, []string{"kind", "group"}, []string{"name"}); err != nil {
		return err
	}
	if isCA, _ := spec["isCA"].(bool); !isCA && len(stringSlice(spec["dnsNames"])) == 0 {
		return errors.New("spec.dnsNames: a serving certificate needs DNS names")
	}
	return nil
}

// checkIssuer checks a cert-manager.io/v1 Issuer of the kinds the chart makes (selfSigned, ca).
func checkIssuer(u *unstructured.Unstructured) error {
	spec, err := mapAt(u, "spec")
	if err != nil {
		return err
	}
	if err := checkFields("spec", spec, []string{"selfSigned", "ca"}, nil); err != nil {
		return err
	}
	if len(spec) != 1 {
		return errors.New("spec: want exactly one issuer type")
	}
	if ca, ok := spec["ca"].(map[string]any); ok {
		if err := checkFields("spec.ca", ca, nil, []string{"secretName"}); err != nil {
			return err
		}
	}
	return nil
}

func stringSlice(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// TestStrictDecoding proves the decoder used on every manifest refuses what a lenient one would
// silently drop.
func TestStrictDecoding(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field": `
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replica: 2
`,
		"unknown nested field": `
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1.example.io}
spec: {group: example.io, version: v1, service: {name: svc, namespace: ns, prot: 443}}
`,
		"duplicate field": `
apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  ports: []
  ports: []
`,
		"unknown kind": `
apiVersion: example.io/v1
kind: Widget
metadata: {name: x}
`,
		"bad quantity": `
apiVersion: v1
kind: Pod
metadata: {name: x}
spec:
  containers:
  - name: c
    resources: {limits: {memory: 300MB-ish}}
`,
		"servicemonitor typo": `
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: x}
spec:
  selector: {}
  endpoints: [{port: https, bearerTokenfile: /x}]
`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeStrict(name, []byte(doc)); err == nil {
				t.Fatal("decoded without error")
			} else {
				t.Logf("refused as expected: %v", err)
			}
		})
	}
}
