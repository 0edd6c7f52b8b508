//go:build linux

package loader

// The kernel/user contract (bpf/types.c): one Go type for each shared C
// struct and enum. The program objects' own runs pass -no-global-types so
// that no second copy of a shared type is generated.
//go:generate go tool bpf2go -cflags "-O2 -g -Wall -Werror" -target bpfel -no-global-types -type event -type sandbox -type aigate_kind -type aigate_op -type aigate_size -type aigate_sandbox_flag -type aigate_counter -type aigate_scratch -type aigate_access -type aigate_rule_set -type aigate_key_size -type aigate_set_flag -type aigate_name_len -type aigate_set_except -type aigate_unix_size -type aigate_net_mode -type aigate_loopback -type aigate_net_key -type aigate_rule_flag -type aigate_verdict_gen -type aigate_verdict_ok -type aigate_family -type refused_call -type aigate_refused_cap kernel ../../bpf/types.c -- -I../../bpf/include
