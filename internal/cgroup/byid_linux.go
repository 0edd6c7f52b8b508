package cgroup

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// fileIDKernfs is the kernel's FILEID_KERNFS handle type: on cgroup2 a
// file handle is the cgroup's 64-bit id.
const fileIDKernfs = 0xfe

// OpenByID opens the cgroup whose id (its directory's inode number) is id,
// anywhere below the cgroup2 mount that mnt is open on, with flags. It
// needs CAP_DAC_READ_SEARCH; ESTALE or ENOENT mean no such cgroup.
func OpenByID(mnt int, id uint64, flags int) (int, error) {
	var h [8]byte
	binary.NativeEndian.PutUint64(h[:], id)
	return unix.OpenByHandleAt(mnt, unix.NewFileHandle(fileIDKernfs, h[:]), flags)
}
