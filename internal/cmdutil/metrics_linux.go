//go:build linux

package cmdutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/agent"
	"github.com/aigate-dev/aigate/internal/metrics"
)

// DefaultMetricsAddr is where the agent serves /metrics unless told
// otherwise: loopback only, the counts are nobody else's business.
const DefaultMetricsAddr = "127.0.0.1:9464"

// ServeMetrics serves the agent's /metrics on addr until the returned
// function is called; addr "" serves nothing.
func ServeMetrics(addr string, a *agent.Agent, log *zap.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve metrics on %s: %w (use --metrics-addr to pick another address, or \"\" to turn metrics off)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(a.Registry(), zapPrintln{log}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", zap.Error(err))
		}
	}()
	log.Info("metrics", zap.String("addr", "http://"+ln.Addr().String()+"/metrics"))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}, nil
}

// zapPrintln adapts zap to promhttp's error log.
type zapPrintln struct{ log *zap.Logger }

func (z zapPrintln) Println(v ...any) { z.log.Warn("metrics: " + fmt.Sprint(v...)) }
