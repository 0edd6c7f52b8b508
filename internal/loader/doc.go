// Package loader is the only code that touches aigate's BPF objects: it
// probes whether BPF LSM works, loads and attaches the programs, fills their
// maps from compiled policies and turns the ring buffer into events.
package loader
