//go:build linux

package config

import "golang.org/x/sys/unix"

// pseudoFS names the kernel pseudo file system dir is on ("" for any
// other, or when statfs fails: the walk then reports its own error).
// Their files are not a project's, and many cannot be marked (fanotify
// refuses /proc/PID/net with EINVAL).
func pseudoFS(dir string) string {
	var sfs unix.Statfs_t
	if unix.Statfs(dir, &sfs) != nil {
		return ""
	}
	switch int64(sfs.Type) {
	case unix.PROC_SUPER_MAGIC:
		return "proc"
	case unix.SYSFS_MAGIC:
		return "sysfs"
	case unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC:
		return "cgroup"
	case unix.DEBUGFS_MAGIC:
		return "debugfs"
	case unix.TRACEFS_MAGIC:
		return "tracefs"
	case unix.SECURITYFS_MAGIC:
		return "securityfs"
	case unix.BPF_FS_MAGIC:
		return "bpf"
	case unix.DEVPTS_SUPER_MAGIC:
		return "devpts"
	case unix.PSTOREFS_MAGIC:
		return "pstore"
	case unix.EFIVARFS_MAGIC:
		return "efivarfs"
	case unix.BINFMTFS_MAGIC:
		return "binfmt_misc"
	}
	return ""
}
