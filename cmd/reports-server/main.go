// Command reports-server serves policy reports from PostgreSQL as a Kubernetes API.
//
//	reports-server serve [--standalone] [flags]   run the API server
//	reports-server migrate up|down|status         manage the database schema
//	reports-server apiservices remove             delete the APIServices (uninstall)
//	reports-server version                        print the version
package main

import (
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json
)

func main() {
	os.Exit(cli.Run(newRootCommand()))
}

func newRootCommand() *cobra.Command {
	logging := logsapi.NewLoggingConfiguration()
	// The logging options are gated by their own features (json output is "beta"); a private gate
	// at its defaults enables what Kubernetes components enable by default.
	gate := featuregate.NewFeatureGate()
	if err := logsapi.AddFeatureGates(gate); err != nil {
		panic(err) // only on a duplicate registration in this fresh gate, a programming error
	}
	root := &cobra.Command{
		Use:   "reports-server",
		Short: "Kubernetes policy reports API backed by PostgreSQL",
		Long: "reports-server serves wgpolicyk8s.io, reports.kyverno.io and openreports.io reports as a Kubernetes API " +
			"(an aggregated API server behind kube-apiserver, or standalone) and keeps them in PostgreSQL instead of etcd.",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return logsapi.ValidateAndApply(logging, gate)
		},
		SilenceUsage: true,
	}
	logsapi.AddFlags(logging, root.PersistentFlags())
	root.AddCommand(newServeCommand(), newMigrateCommand(), newAPIServicesCommand(), newVersionCommand())
	return root
}
