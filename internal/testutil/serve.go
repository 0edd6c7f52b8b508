package testutil

import (
	"context"
	"testing"
)

// Serve runs serve in a goroutine until the test ends. Then it cancels
// serve's context, fails the test if serve returned an error, and closes
// with closeFn (an error there fails the test too). The context it returns
// is serve's: done once the test is over.
func Serve(t testing.TB, serve func(context.Context) error, closeFn func() error) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
		if err := closeFn(); err != nil {
			t.Error(err)
		}
	})
	return ctx
}
