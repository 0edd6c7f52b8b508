//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel/user contract in one object that is never loaded: bpf2go
 * generates one Go type for each struct and enum below (kernel_bpfel.go),
 * so that the three program objects, which all include these headers,
 * share one Go type per C type. Their own bpf2go runs pass -no-global-types.
 *
 * bpf2go -type only sees types used in BTF, hence the unused variables.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "aigate.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const struct event *unused_event __attribute__((unused));
const struct sandbox *unused_sandbox __attribute__((unused));
const enum aigate_kind *unused_kind __attribute__((unused));
const enum aigate_op *unused_op __attribute__((unused));
const enum aigate_size *unused_size __attribute__((unused));
const enum aigate_sandbox_flag *unused_sandbox_flag __attribute__((unused));
const enum aigate_counter *unused_counter __attribute__((unused));
const enum aigate_scratch *unused_scratch __attribute__((unused));
const enum aigate_access *unused_access __attribute__((unused));
const enum aigate_rule_set *unused_rule_set __attribute__((unused));
const enum aigate_key_size *unused_key_size __attribute__((unused));
const enum aigate_set_flag *unused_set_flag __attribute__((unused));
const enum aigate_name_len *unused_name_len __attribute__((unused));
const enum aigate_set_except *unused_set_except __attribute__((unused));
const enum aigate_unix_size *unused_unix_size __attribute__((unused));
const enum aigate_net_mode *unused_net_mode __attribute__((unused));
const enum aigate_loopback *unused_loopback __attribute__((unused));
const enum aigate_net_key *unused_net_key __attribute__((unused));
const enum aigate_rule_flag *unused_rule_flag __attribute__((unused));
const enum aigate_verdict_gen *unused_verdict_gen __attribute__((unused));
const enum aigate_verdict_ok *unused_verdict_ok __attribute__((unused));
const enum aigate_family *unused_family __attribute__((unused));
const struct refused_call *unused_refused_call __attribute__((unused));
const enum aigate_refused_cap *unused_refused_cap __attribute__((unused));
