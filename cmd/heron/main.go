// Command heron publishes container images into a tree of files and serves
// that tree as an OCI Distribution API registry.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "heron",
		Short:         "A container registry made of files",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newCmdPublish(), newCmdServe(), newCmdLs())
	root.AddCommand(newCmdRm(), newCmdTag(), newCmdReshard())
	root.AddCommand(newCmdGC(), newCmdVerify())
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "heron:", err)
		os.Exit(1)
	}
}
