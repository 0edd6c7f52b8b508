// Package metrics is the one place that defines aigate's Prometheus metrics.
// Violation counts come from the backend's exact counters at scrape time, not
// from the event stream, so they stay exact when events are dropped. Label
// values come from small fixed sets: never pids, paths or sandbox names.
package metrics
