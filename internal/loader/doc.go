// Package loader is the only code that touches aigate's BPF objects: it
// probes whether BPF LSM works, loads and attaches the programs, pins them,
// fills their maps from compiled policies and turns the ring buffer into
// raw events. The backends that decide what to write are internal/lsm and
// internal/egress.
package loader
