package cli

// lsmProbe is the real BPF LSM load test for doctor. It stays nil until
// internal/loader provides ProbeLSM; probe_linux.go then sets it.
var lsmProbe func() error
