// Package e2e tests the built aigate binary end to end, as a user runs it,
// against both Linux backends: fanotify on any host (root), BPF LSM where the
// kernel allows it (the VM of `make vmtest`). The non-test file holds the
// helpers that other packages' end-to-end tests share: where the binary
// under test is, how a run is bounded, what a run must leave behind.
package e2e
