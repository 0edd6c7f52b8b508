package testutil

import (
	"net"
	"testing"
)

// AcceptAll accepts connections on l and closes each at once, until the
// test ends and closes l: a service that only has to be reachable.
func AcceptAll(t testing.TB, l net.Listener) {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}
