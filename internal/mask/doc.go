// Package mask replaces secrets in a byte stream, such as a tool's terminal
// output, as it passes through, even when a secret is split over writes.
package mask
