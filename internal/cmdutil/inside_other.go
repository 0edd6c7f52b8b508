//go:build !linux

package cmdutil

// InsideSandbox: sandboxes are cgroups on Linux only.
func InsideSandbox() (string, bool) { return "", false }
