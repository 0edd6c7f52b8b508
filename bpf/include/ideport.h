/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The loopback ports that Claude Code's IDE lock files name
 * (~/.claude/ide/<port>.lock), per sandbox: a claude outside the sandbox
 * (--ide, autoConnectIde) connects to 127.0.0.1:<port> for the lock's IDE,
 * so a server of the sandbox listening there would be handed that claude.
 * The agent writes one entry per sandbox cgroup and port (the locks found
 * when the run starts and those written while it runs); the ingress
 * program drops a loopback packet to a listening socket of the sandbox on
 * such a port. See docs/threat-model.md, "A stale IDE lock".
 */
#ifndef AIGATE_IDEPORT_H
#define AIGATE_IDEPORT_H

#include "aigate.h"

struct ide_port_key {
	__u64 cgroup_id; /* the sandbox's cgroup v2 id (sandbox_walk's) */
	__u32 port;	 /* host byte order */
	__u32 pad;	 /* zero */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct ide_port_key);
	__type(value, __u32); /* the event's rule id: AIGATE_RULE_IDE_LOCK | port */
} ide_ports SEC(".maps");

#endif /* AIGATE_IDEPORT_H */
