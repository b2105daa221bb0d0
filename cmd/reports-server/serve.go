package main

import (
	"github.com/spf13/cobra"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/reports-server/reports-server/internal/server"
)

func newServeCommand() *cobra.Command {
	o := server.NewOptions()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the API server",
		Long: "Run the reports API server. By default it runs as an aggregated API server behind kube-apiserver " +
			"(register it with an APIService). With --standalone it needs no Kubernetes: it serves on 127.0.0.1 with a " +
			"self-signed certificate and a generated token, starts a local PostgreSQL when no --database-url is given, " +
			"writes a kubeconfig and prints \"ready\" once it serves.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(cmd.Flags()); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			// The process is the server's alone: its garbage collector is the server's to set.
			o.Memory.Apply()
			// SIGINT/SIGTERM cancel the context; a second signal exits at once.
			ctx := genericapiserver.SetupSignalContext()
			return o.Run(ctx, server.Hooks{Out: cmd.OutOrStdout()})
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}
