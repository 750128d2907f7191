// A small Go program built inside the closed network from the bundle's GOPROXY tree.
package main

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

func main() {
	cmd := &cobra.Command{
		Use: "go-hello",
		Run: func(*cobra.Command, []string) {
			id := uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://airlock.invalid/"))
			fmt.Println("hello", id)
		},
	}
	if err := cmd.Execute(); err != nil {
		panic(err)
	}
}
