// Package egress enforces a sandbox's network policy for both Linux
// backends: the cgroup sock_addr programs of internal/loader on the sandbox
// cgroup, and a DNS proxy (internal/dns) that teaches them the addresses of
// allowed domains from the sandbox's own queries, or, where the proxy
// cannot run, a periodic resolution of those domains.
package egress
