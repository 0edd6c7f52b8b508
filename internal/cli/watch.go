//go:build linux

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/events"
)

type watchOptions struct {
	Sandbox string
	Kind    string
	JSON    bool
	Socket  string
	// retry is how long to wait before reconnecting; tests shorten it.
	retry time.Duration
}

func newWatchCmd(f *cmdutil.Factory) *cobra.Command {
	opts := &watchOptions{retry: time.Second}
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Stream blocked operations from your sandboxes, live",
		Long: `Print each operation the agent blocks (or, in audit mode, would block) in
the sandboxes you may see: your own, or all of them for root. It keeps
running when the agent restarts and says when it reconnects.

--json prints one JSON object per line (schema: docs/events.md).`,
		Example: `  aigate watch
  aigate watch --kind net --json | jq .addr`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch events.Kind(opts.Kind) {
			case "", events.KindFile, events.KindExec, events.KindNet:
			default:
				return cmdutil.UsageErrorf("--kind %q: want file, exec or net", opts.Kind)
			}
			return runWatch(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Sandbox, "sandbox", "", "only events of sandbox `NAME` (see aigate status)")
	fl.StringVar(&opts.Kind, "kind", "", "only events of `KIND`: file, exec or net")
	fl.BoolVar(&opts.JSON, "json", false, "one JSON object per line")
	fl.StringVar(&opts.Socket, "socket", api.SocketPath(), "the agent's socket `PATH` ($"+api.SocketEnv+" changes the default)")
	return cmd
}

func runWatch(ctx context.Context, f *cmdutil.Factory, opts *watchOptions) error {
	if name, ok := cmdutil.InsideSandbox(); ok {
		return cmdutil.InsideError("aigate watch", name)
	}
	c := api.NewClient(opts.Socket)
	filter := api.WatchRequest{Sandbox: opts.Sandbox, Kind: events.Kind(opts.Kind)}
	var out func(events.Event) error
	if opts.JSON {
		jw := events.NewJSONWriter(f.Out)
		out = jw.Write
	} else {
		color := false
		if of, ok := f.Out.(*os.File); ok {
			color = events.ColorFor(of)
		}
		style := events.Style{Color: color}
		out = func(e events.Event) error {
			// The sandbox column is padded so that the lines of several
			// sandboxes align.
			times := ""
			if n := e.N(); n > 1 {
				// Identical denials the agent folded while this
				// watcher was behind.
				times = fmt.Sprintf(" (%d times)", n)
			}
			_, err := fmt.Fprintf(f.Out, "%s  %-14s %s%s\n", e.Time.Local().Format("15:04:05"), e.Sandbox, style.Line(e), times)
			return err
		}
	}
	connected, waiting := false, false
	for {
		s, err := c.Watch(ctx, filter)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var ae *api.Error
			if errors.As(err, &ae) || !errors.Is(err, api.ErrNoAgent) {
				// Refused (no such sandbox, not allowed): retrying
				// will not help.
				return err
			}
			if !waiting {
				fmt.Fprintf(f.Err, "%s%v; waiting for it...\n", events.Prefix, err)
				waiting = true
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(opts.retry):
			}
			continue
		}
		if connected || waiting {
			fmt.Fprintf(f.Err, "%sconnected to the agent\n", events.Prefix)
		}
		if !connected {
			// Nothing else is printed until something is blocked: say
			// that this is working, and what it shows.
			fmt.Fprintf(f.Err, "%swatching %s at %s; blocked operations appear here (Ctrl-C to stop)\n",
				events.Prefix, watchScope(opts), opts.Socket)
		}
		connected, waiting = true, false
		err = pump(s, f, out)
		s.Close()
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		fmt.Fprintf(f.Err, "%sthe agent went away (stopped or restarting); reconnecting...\n", events.Prefix)
		waiting = true
	}
}

func pump(s *api.Stream, f *cmdutil.Factory, out func(events.Event) error) error {
	for {
		e, dropped, err := s.Next()
		if err != nil {
			return err
		}
		if dropped > 0 {
			fmt.Fprintf(f.Err, "%s%d events were not delivered (this watcher fell behind)\n", events.Prefix, dropped)
			continue
		}
		if err := out(*e); err != nil {
			return fmt.Errorf("write event: %w", err)
		}
	}
}

// watchScope says whose events a watcher gets, for its first line.
func watchScope(opts *watchOptions) string {
	s := "your sandboxes"
	if os.Geteuid() == 0 {
		s = "every sandbox"
	}
	if opts.Sandbox != "" {
		s = "sandbox " + opts.Sandbox
	}
	if opts.Kind != "" {
		s += " (" + opts.Kind + " events only)"
	}
	return s + " through the agent"
}
