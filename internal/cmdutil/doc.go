// Package cmdutil holds what aigate's commands share: the Factory they are
// given, the exit codes and the errors that carry them, the trust records,
// the build's version, and where the process runs (inside a sandbox or not).
// It imports no command; cli and run import it.
package cmdutil
