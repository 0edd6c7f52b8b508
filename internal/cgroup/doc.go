// Package cgroup creates, inspects and removes the cgroup v2 directories that
// are aigate's sandboxes. A sandbox is identified in the kernel by the inode
// number of its directory, which is what bpf_get_current_cgroup_id returns.
package cgroup
