//go:build !linux

package config

// Do runs fn. Outside Linux there is no per-thread file-system identity
// to take on without cgo (macOS has pthread_setugid_np only through
// libSystem), so under sudo fn runs with root's.
func (u *User) Do(fn func() error) error { return fn() }
