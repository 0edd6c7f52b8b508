// Package llaudit turns the kernel's audit records of Landlock refusals
// (Linux 6.15+) into aigate deny events: it reads the audit read-log
// multicast group, parses the records, and attributes each refusal to the
// sandbox whose Landlock domain made it.
package llaudit
