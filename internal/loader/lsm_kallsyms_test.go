//go:build linux

package loader

import (
	"errors"
	"io/fs"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/kallsyms"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// The programs get rename_lock's address from the loader's own reading
// of kallsyms; where that fails they get 0 (the verdict cache off, every
// open checked in full) and the load goes on, saying why.
func TestRenameLockFromKallsyms(t *testing.T) {
	const addr = 0xffffffff82a0b040
	for _, tc := range []struct {
		name    string
		lookup  func() (uint64, error)
		want    uint64
		noCache error // errors.Is, nil: the cache is on
	}{
		{"listed", func() (uint64, error) { return addr, nil }, addr, nil},
		{"unreadable", func() (uint64, error) {
			return 0, &fs.PathError{Op: "open", Path: kallsyms.Path, Err: fs.ErrPermission}
		}, 0, fs.ErrPermission},
		{"zeroed", func() (uint64, error) { return 0, kallsyms.ErrHidden }, 0, kallsyms.ErrHidden},
		{"not listed", func() (uint64, error) { return 0, kallsyms.ErrMissing }, 0, kallsyms.ErrMissing},
		{"an address with an error", func() (uint64, error) { return addr, errors.New("listed twice") }, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := loadLsm()
			if err != nil {
				t.Fatal(err)
			}
			noCache, err := setRenameLock(spec, tc.lookup)
			if err != nil {
				t.Fatalf("setRenameLock: %v", err)
			}
			var got uint64
			if err := spec.Variables[lsmVarRenameLockAddr].Get(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("rename_lock_addr %#x, want %#x", got, tc.want)
			}
			_, lookErr := tc.lookup()
			switch {
			case lookErr == nil && noCache != nil:
				t.Errorf("cache off although the address is known: %v", noCache)
			case lookErr != nil && noCache == nil:
				t.Errorf("cache said on, lookup failed with %v", lookErr)
			case tc.noCache != nil && !errors.Is(noCache, tc.noCache):
				t.Errorf("noCache %v does not wrap %v", noCache, tc.noCache)
			case noCache != nil && !strings.Contains(noCache.Error(), "verdict cache is off"):
				t.Errorf("noCache %q does not say what it costs", noCache)
			}
		})
	}
}

// With /proc/kallsyms unreadable (a socket bound over it in a mount
// namespace of this thread's own: open gives ENXIO, as an LSM's refusal or
// a masked /proc would give another error) the LSM object loads and says
// its verdict cache is off. cilium/ebpf, which resolved the old
// `extern rename_lock __ksym __weak`, failed the whole load here ("resolve
// ksyms: open /proc/kallsyms: no such device or address").
func TestLSMLoadsWithoutKallsyms(t *testing.T) {
	testutil.RequireRoot(t)
	if err := ProbeLSM(); err != nil {
		testutil.SkipUnlessLSM(t, err.Error())
	}
	sock := filepath.Join(t.TempDir(), "kallsyms.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		noCache error
		err     error
	}
	done := make(chan result, 1)
	go func() {
		// The thread keeps its mount namespace: it is not unlocked, so
		// the runtime ends it with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- result{err: err}
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			done <- result{err: err}
			return
		}
		if err := unix.Mount(sock, kallsyms.Path, "", unix.MS_BIND, ""); err != nil {
			done <- result{err: err}
			return
		}
		if _, err := kallsyms.Lookup(kallsyms.Path, "rename_lock"); err == nil {
			done <- result{err: errors.New("kallsyms still readable under the socket")}
			return
		}
		l, err := OpenLSM(LSMOptions{})
		if err != nil {
			done <- result{err: err}
			return
		}
		noCache := l.VerdictCache()
		done <- result{noCache: noCache, err: l.Release()}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("OpenLSM with /proc/kallsyms unreadable: %v", r.err)
	}
	if r.noCache == nil || !errors.Is(r.noCache, unix.ENXIO) {
		t.Fatalf("VerdictCache() = %v, want the cache off for ENXIO", r.noCache)
	}
	t.Logf("loaded: %v", r.noCache)
}
