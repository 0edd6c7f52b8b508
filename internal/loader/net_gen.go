//go:build linux

package loader

// The compiler is taken from $BPF_CLANG (bpf2go's default for -cc), which
// `make generate` sets to Debian's clang 14.
//go:generate go tool bpf2go -cflags "-O2 -g -Wall -Werror" -target bpfel -type event -type sandbox -type net_settings -type net_key4 -type net_key6 -type net_rule -type dns_proxy -type addr_use_key net ../../bpf/sockaddr.c -- -I../../bpf/include
