package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// insecureTLS is for probing health endpoints of components that serve self-signed certificates
// (kube-controller-manager, reports-server); what is tested goes through kube-apiserver.
func insecureTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // health probes of self-signed test servers
}

// httpGetOK fails unless GET url answers 200.
func httpGetOK(ctx context.Context, client *http.Client, url string) error {
	_, err := httpGet(ctx, client, url)
	return err
}

// httpGet returns the body of GET url, which must answer 200.
func httpGet(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return string(body), nil
}

// Kubectl runs the repository's kubectl as the admin, with stdin if not nil.
func (c *Cluster) Kubectl(ctx context.Context, stdin []byte, args ...string) (stdout, stderr string, err error) {
	return c.KubectlAs(ctx, c.AdminKubeconfig, stdin, args...)
}

// KubectlAs runs the repository's kubectl with kubeconfig.
func (c *Cluster) KubectlAs(ctx context.Context, kubeconfig string, stdin []byte, args ...string) (stdout, stderr string, err error) {
	var full []string
	if kubeconfig != "" {
		full = append(full, "--kubeconfig="+kubeconfig)
	}
	cmd := exec.CommandContext(ctx, c.KubectlBin, append(full, args...)...)
	// Its own HOME: the discovery cache stays with the run, and no user configuration applies.
	cmd.Env = append(os.Environ(), "HOME="+filepath.Join(c.Dir, "home"), "KUBECONFIG=")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), errOut.String(), err
}

// Helm runs the helm command (Binaries.Helm) as the admin, with stdin if not nil.
func (c *Cluster) Helm(ctx context.Context, stdin []byte, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, c.HelmBin, args...)
	// Its own HOME and Helm directories (repositories, registry logins, caches): no user
	// configuration applies and nothing outlives the run.
	home := filepath.Join(c.Dir, "home")
	cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG="+c.AdminKubeconfig, "NO_COLOR=1",
		"HELM_CACHE_HOME="+filepath.Join(home, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "helm", "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "helm", "data"))
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), errOut.String(), err
}
