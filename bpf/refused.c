//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The sys_exit program for kernels and backends without the unix-socket
 * object (sockunix.c, whose sys_exit program reports the same calls
 * besides its own work): before Linux 6.7, and on the BPF LSM backend,
 * which confines unix sockets itself. It reports the calls of sandboxed
 * tasks that Landlock may have refused (refused.h). One program on
 * sys_exit at a time: the loader attaches this one or sockunix.c's.
 *
 * A separate object: it needs nothing 6.1 lacks, and may fail to load
 * (tp_btf) without taking the network object down with it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "refused.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Runs for every system call of every task while attached (while a
 * sandbox is confined, and a while after): the result is compared first.
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(aigate_refused_exit, struct pt_regs *regs, long ret)
{
	if (ret != -AIGATE_ERR_ACCES && ret != -AIGATE_ERR_PERM)
		return 0;
	return report_refused(regs, ret);
}
