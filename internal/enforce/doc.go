// Package enforce defines the interface every Linux enforcement backend
// (BPF LSM, fanotify) implements, so that run, the agent, watch and metrics
// work the same whichever backend is active.
package enforce
