package cli

// lsmProbe is the real BPF LSM load test for doctor; probe_linux.go sets
// it to loader.ProbeLSM. It stays nil where there is no BPF LSM.
var lsmProbe func() error
