// Command aigate runs AI coding agents in a kernel-enforced sandbox.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/aigate-dev/aigate/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, cli.NewFactory(), os.Args[1:])
	stop()
	os.Exit(int(code))
}
