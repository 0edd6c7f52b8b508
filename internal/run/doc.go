// Package run is `aigate run`: it asks the agent (or one it embeds under
// sudo) for a sandbox and runs the command in it on Linux, or applies ACLs
// and pf itself on macOS, and reports what the sandbox refused. Its
// options struct and runRun are what its tests call, without a terminal.
package run
