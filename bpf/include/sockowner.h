/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Whose socket is it: the kernel gives every socket the cgroup v2 of the
 * task that created it (sk_cgrp_data, set in sk_alloc and kept by accept's
 * clones), and never changes it, also when the socket's descriptor moves to
 * another process.
 */
#ifndef AIGATE_SOCKOWNER_H
#define AIGATE_SOCKOWNER_H

#include "aigate.h"

/* peer_inside tells whether sk was created in the sandbox cgroup or below. */
static __always_inline bool peer_inside(struct sock *sk, __u64 sandbox_cgroup)
{
	struct cgroup *cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);

	for (int i = 0; i < AIGATE_MAX_LEVEL && cg; i++) {
		if (BPF_CORE_READ(cg, kn, id) == sandbox_cgroup)
			return true;
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
	}
	return false;
}

#endif /* AIGATE_SOCKOWNER_H */
