// Package policy parses aigate's YAML configuration, merges the global and
// project files, and compiles the result into the flat rule sets that every
// enforcement backend loads. It is pure Go and knows nothing of the kernel.
package policy
