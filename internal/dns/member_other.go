//go:build !linux

package dns

import "errors"

// memberCheck cannot ask the kernel outside Linux: every client is served.
type memberCheck struct{}

func newMemberCheck(string, any) (*memberCheck, error) {
	return nil, errors.New("checking who queries needs Linux's sock_diag")
}

func (*memberCheck) member(peer) (bool, error) { return true, nil }

func (*memberCheck) close() error { return nil }
