//go:build linux

package loader

// The objects are committed so that `go build` needs no clang; `make
// generate` rebuilds them with Debian's clang 14 (BPF2GO_CC=clang-14).
//go:generate go tool bpf2go -cflags "-O2 -g -Wall -Werror" -target bpfel -no-global-types -type path_key -type name_key -type inode_key -type scratch -type exec_size_key -type exec_sum_key -type verdict lsm ../../bpf/lsm.c -- -I../../bpf/include
//go:generate go tool bpf2go -cflags "-O2 -g -Wall -Werror" -target bpfel lsmProbe ../../bpf/lsmprobe.c -- -I../../bpf/include
