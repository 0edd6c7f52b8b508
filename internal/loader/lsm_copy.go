//go:build linux

package loader

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/resolve"
)

// copyPrograms are lsm.c's programs that refuse copies of deny_exec
// binaries (execcopy.h), by lsmProgramOrder's names.
var copyPrograms = []string{"bprm_copy", "mmap_copy"}

// ExecCopies says whether this kernel lets the BPF-LSM backend refuse
// copies of deny_exec binaries by content (lsm.c's bprm_copy), and if not,
// why, in words for status and doctor. It reads only the kernel's BTF, so
// it needs no root.
func ExecCopies() (bool, string) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false, fmt.Sprintf("the kernel's BTF is unreadable (%v)", err)
	}
	return execCopies(spec)
}

func execCopies(spec *btf.Spec) (bool, string) {
	// BPF_CALL_3 declares a typedef btf_<helper> for each helper.
	var td *btf.Typedef
	if spec.TypeByName("btf_bpf_ima_file_hash", &td) != nil {
		return false, "the kernel has no bpf_ima_file_hash (Linux 6.0+): a copy of a deny_exec binary under another name runs"
	}
	var fn *btf.Func
	if spec.TypeByName("ima_file_hash", &fn) != nil {
		return true, "the kernel has no IMA (CONFIG_IMA): an exec of a file the size of a deny_exec binary is refused, copy or not"
	}
	return true, ""
}

// keepCopyHook swaps the copy programs for stubs that load anywhere and
// are never attached where the kernel lacks bpf_ima_file_hash (before
// 6.0), so that the rest of the object still loads; copies then run, and
// ExecCopies says so.
func keepCopyHook(spec *ebpf.CollectionSpec) bool {
	kspec, err := btf.LoadKernelSpec()
	if err == nil {
		if ok, _ := execCopies(kspec); ok {
			return true
		}
	}
	for _, name := range copyPrograms {
		stubProgram(spec, "aigate_"+name)
	}
	return false
}

// fileSum is the SHA-256 of a deny_exec binary, cached by what proves the
// content unchanged (inode, size, modification and change times), so that
// a sandbox's creation rereads only binaries that changed.
type fileSum struct {
	size int64
	sum  [sha256.Size]byte
}

type sumKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

type sumCache struct {
	mu  sync.Mutex
	got map[sumKey]fileSum
}

// sum returns the size and SHA-256 of the file at path, or ok false when
// it is not a regular file or cannot be read (the copy is then matched by
// nothing but its name and inode, as before).
func (c *sumCache) sum(path string) (fileSum, bool) {
	f, err := os.Open(path)
	if err != nil {
		return fileSum{}, false
	}
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size <= 0 {
		return fileSum{}, false
	}
	k := sumKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
	c.mu.Lock()
	s, ok := c.got[k]
	c.mu.Unlock()
	if ok {
		return s, true
	}
	h := sha256.New()
	if n, err := io.Copy(h, f); err != nil || n != st.Size {
		return fileSum{}, false
	}
	s = fileSum{size: st.Size}
	h.Sum(s.sum[:0])
	c.mu.Lock()
	if c.got == nil {
		c.got = map[sumKey]fileSum{}
	}
	c.got[k] = s
	c.mu.Unlock()
	return s, true
}

// writeCopies writes the size and content hash of each deny_exec binary in
// files (regular files only) for bprm_copy. put records what it writes;
// the first rule for a size or a hash wins, as for every key.
func (l *LSM) writeCopies(set uint32, files []resolve.File, put func(*ebpf.Map, any, policy.RuleID) error) error {
	if !l.copies {
		return nil
	}
	for _, f := range files {
		if f.IsDir {
			continue
		}
		s, ok := l.sums.sum(f.Path)
		if !ok {
			continue
		}
		// The hash first: the program acts on a size entry only.
		hk := lsmExecSumKey{Set: set, Sum: s.sum}
		if err := put(l.objs.ExecSums, hk, f.Rule); err != nil {
			return fmt.Errorf("write content hash of %s: %w", f.Path, err)
		}
		sk := lsmExecSizeKey{Set: set, Size: uint64(s.size)}
		if err := put(l.objs.ExecSizes, sk, f.Rule); err != nil {
			return fmt.Errorf("write size of %s: %w", f.Path, err)
		}
	}
	return nil
}

// RefusesCopies tells whether the copy programs are attached: copies of
// deny_exec binaries are refused by content.
func (l *LSM) RefusesCopies() bool { return l.copies }
