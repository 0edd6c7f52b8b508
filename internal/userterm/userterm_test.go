//go:build linux

package userterm

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestFind: the user's pseudo-terminals are found, not this process's
// own, not another user's, not a file or a link named like one.
func TestFind(t *testing.T) {
	testutil.RequireRoot(t)
	mine, mineSlave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	defer mineSlave.Close()
	theirs, theirsSlave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	const uid = 4242
	if err := os.Chown(theirsSlave.Name(), uid, -1); err != nil {
		t.Fatal(err)
	}
	theirsSlave.Close() // the test process holds no descriptor of it now: not its own
	other, otherSlave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	defer otherSlave.Close()
	if err := os.Chown(otherSlave.Name(), uid+1, -1); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mineSlave.Name(), uid, -1); err != nil {
		t.Fatal(err)
	}
	fake := t.TempDir()
	for _, n := range []string{"7", "8"} {
		if err := os.WriteFile(filepath.Join(fake, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(theirsSlave.Name(), filepath.Join(fake, "9")); err != nil {
		t.Fatal(err)
	}
	os.Lchown(filepath.Join(fake, "9"), uid, -1)
	places := append(slices.Clone(Places), Place{fake, regexp.MustCompile(`^[0-9]+$`)})
	got, more := Find(uid, places, Own())
	if !slices.Contains(got, theirsSlave.Name()) || more {
		t.Errorf("Find = %v (more %v), want %s among them", got, more, theirsSlave.Name())
	}
	for _, p := range got {
		if p == mineSlave.Name() || p == otherSlave.Name() || filepath.Dir(p) == fake {
			t.Errorf("Find = %v: %s is this process's own, another user's, or no terminal", got, p)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(mineSlave.Fd()), &st); err != nil || !Own()[st.Rdev] {
		t.Errorf("Own does not have this process's open terminal %s (%v)", mineSlave.Name(), err)
	}
}
