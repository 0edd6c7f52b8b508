//go:build !linux

package cli

// inSandbox reports whether this process runs inside an aigate sandbox;
// the macOS sandbox is a sandbox-exec profile that already refuses writes
// to aigate's files.
func inSandbox() bool { return false }
