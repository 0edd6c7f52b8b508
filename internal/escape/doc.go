// Package escape is the escape suite: attacks on the sandbox boundary tried
// the way a prompt-injected tool would, as an unprivileged user inside a real
// `aigate run`, each asserting that the attempt failed and that a deny event
// was reported. It has no code of its own, only tests (`make test-escape`).
package escape
