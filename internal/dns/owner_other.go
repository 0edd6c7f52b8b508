//go:build !linux

package dns

import (
	"errors"
	"time"
)

// ownerFinder finds nothing outside Linux: the events carry no process.
type ownerFinder struct{}

func newOwnerFinder(string, any, time.Duration) (*ownerFinder, error) {
	return nil, errors.New("finding the process behind a query needs Linux's sock_diag")
}

func (*ownerFinder) find(peer) (owner, error) { return owner{}, errors.New("not supported") }

func (*ownerFinder) close() error { return nil }
