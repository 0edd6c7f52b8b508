// Package events defines aigate's one user-side event type, a denial (or, in
// audit mode, a would-be denial) reported by any enforcement backend, and the
// one place that formats events for humans and as JSON lines.
package events
