// Package sandbox runs a command confined by an enforcement backend: it
// creates the sandbox's cgroup v2 directory, registers it with the backend,
// starts the command directly inside it (no window in which it runs
// unconfined), and removes everything again. `aigate run` and the agent share
// this lifecycle; terminals and signals are the caller's business.
package sandbox
