// Command kubectl is the upstream kubectl built from the k8s.io/kubectl module pinned in go.mod,
// so the integration tests exercise the same client version as the server libraries without
// depending on whatever kubectl happens to be installed on the machine.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// kubectl has already printed the error in its own format.
		os.Exit(1)
	}
}
