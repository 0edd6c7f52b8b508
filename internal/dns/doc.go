// Package dns is the per-sandbox DNS proxy: it answers only the names a
// sandbox's policy allows, refuses every other query (so that data cannot
// leave inside query names), forwards allowed queries upstream and teaches
// the kernel's allow map the answer addresses before the client sees them.
package dns
