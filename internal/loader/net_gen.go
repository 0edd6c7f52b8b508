//go:build linux

package loader

// The compiler is taken from $BPF2GO_CC (bpf2go's default for -cc), which
// `make generate` sets to Debian's clang 14.
//go:generate go tool bpf2go -cflags "-O2 -g -Wall -Werror" -target bpfel -no-global-types -type net_settings -type net_key4 -type net_key6 -type net_rule -type dns_proxy -type addr_use_key -type ide_port_key net ../../bpf/sockaddr.c -- -I../../bpf/include

// The unix-socket programs are a separate object: their attach types and
// kfunc exist only on 6.7+, and the network object must still load on 6.1.
//go:generate go tool bpf2go -cflags "-O2 -g -Wall -Werror" -target bpfel -no-global-types -type unix_name -type unix_allow_key -type unix_bound_key -type unix_bound_val -type unix_scratch_buf netUnix ../../bpf/sockunix.c -- -I../../bpf/include

// The sys_exit program where the unix-socket object is not loaded (before
// 6.7, and on the BPF LSM backend): Landlock's refusals (refused.h).
//go:generate go tool bpf2go -cflags "-O2 -g -Wall -Werror" -target bpfel -no-global-types netRefused ../../bpf/refused.c -- -I../../bpf/include
