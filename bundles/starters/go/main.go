// The PoC's Go starter set: a command-line program with common libraries (cobra, uuid,
// testify in its tests), built inside the closed network from the bundle's GOPROXY tree.
package main

import (
	"fmt"
	"os"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

func newCommand() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "starter",
		Short: "Prints a name-based UUID for NAME",
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), name, uuid.NewSHA1(uuid.NameSpaceURL, []byte(name)))
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "https://airlock.invalid/", "the name to derive the UUID from")
	return cmd
}

func main() {
	if err := newCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
