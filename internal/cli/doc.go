// Package cli implements the aigate command line: one file per command,
// each with an options struct and a run function that tests call with
// buffers instead of a terminal. Errors are returned up to Main, which
// prints them once and turns them into an exit code.
package cli
