//go:build !linux

package main

import "syscall"

// childAttr puts a child in its own process group. vmtest only runs on
// Linux; this lets `go vet ./...` pass when cross-checking for macOS.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
