// Package bench measures a case against its baseline side by side: both run
// in the same process (or VM boot), interleaved over several rounds, and
// what is reported is the median of the per-round ratios with their spread.
// On a machine whose CPUs are shared, absolute timings drift with the load;
// a ratio of two measurements taken a few milliseconds apart mostly does
// not. bench/README.md describes the method and how to run everything.
package bench
