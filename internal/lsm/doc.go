// Package lsm is the BPF-LSM enforcement backend: it keeps which sandboxes
// are enforced and drives the loaded lsm.c (internal/loader) to write
// their rules and enter them into the kernel's sandbox table.
package lsm
