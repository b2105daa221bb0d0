package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/reports-server/reports-server/internal/apiservice"
	"github.com/reports-server/reports-server/internal/server"
)

// newAPIServicesCommand is `reports-server apiservices remove`: the uninstall step of the
// APIServices that `serve --manage-apiservices` keeps. The server never removes them itself, so
// a rolling update or a crash never takes the API away.
func newAPIServicesCommand() *cobra.Command {
	opts := server.NewKubeOptions()
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "apiservices",
		Short: "Manage the APIServices that route the report groups to reports-server",
	}
	remove := &cobra.Command{
		Use:   "remove",
		Short: "Delete the APIServices this installation manages (run before uninstalling)",
		Long: "Deletes the APIServices of the served groups that are labelled as managed by reports-server and point at " +
			"--service-namespace/--service-name. Others (CRD-backed ones, another installation's) are left alone. " +
			"If the report CRDs still exist, kube-apiserver serves their groups from etcd again.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
			if err != nil {
				return fmt.Errorf("load kubeconfig: %w", err)
			}
			client, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("create client: %w", err)
			}
			svc := apiservice.Service{Namespace: opts.ServiceNamespace, Name: opts.ServiceName, Port: opts.ServicePort}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			return apiservice.Remove(cmd.Context(), client, opts.GroupVersions(), svc, log)
		},
	}
	fs := remove.Flags()
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Path to the kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).")
	fs.StringVar(&opts.ServiceNamespace, "service-namespace", opts.ServiceNamespace, "Namespace of the Service the APIServices point at.")
	fs.StringVar(&opts.ServiceName, "service-name", opts.ServiceName, "Name of that Service.")
	fs.StringSliceVar(&opts.APIGroups, "api-groups", opts.APIGroups, "Report API groups whose APIServices to remove (default all).")
	cmd.AddCommand(remove)
	return cmd
}
