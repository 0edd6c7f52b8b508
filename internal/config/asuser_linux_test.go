package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/testutil"
)

const sudoUID = 65534

// sudoHome makes a home directory owned by uid 65534 (the user who "ran
// sudo") next to root-owned victims, in a directory both may search.
func sudoHome(t *testing.T) (base, home string, u *User) {
	t.Helper()
	testutil.RequireRoot(t)
	base, err := os.MkdirTemp("", "aigate-sudo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	home = filepath.Join(base, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, sudoUID, sudoUID); err != nil {
		t.Fatal(err)
	}
	return base, home, &User{Name: "sudoer", Home: home, UID: sudoUID, GID: sudoUID, Sudo: true}
}

func rootFile(t *testing.T, path, content string, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}

func TestSudoWriteDoesNotFollowUserSymlinkIntoRootFile(t *testing.T) {
	base, home, u := sudoHome(t)
	victim := filepath.Join(base, "shadow")
	rootFile(t, victim, "root:secret\n", 0o640)
	dir := filepath.Join(home, DirName)
	if err := EnsureDir(dir, u); err != nil {
		t.Fatal(err)
	}
	// The user points trusted.yaml at a root file; `sudo aigate trust`
	// must not replace it (nor chown it, nor drop a temp file next to it).
	if err := os.Symlink(victim, filepath.Join(dir, TrustName)); err != nil {
		t.Fatal(err)
	}
	ts := &TrustStore{}
	ts.Set("/p/.aigate.yaml", []byte("x"), time.Now())
	if err := ts.Write(filepath.Join(dir, TrustName), u); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("trust store written through a symlink to a root file: err = %v, want permission denied", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root:secret\n" {
		t.Errorf("victim now holds %q", b)
	}
	if uid, _ := owner(t, victim); uid != 0 {
		t.Errorf("victim chowned to %d", uid)
	}
	assertOnly(t, base, "home", "shadow")
}

func TestSudoWriteDoesNotFollowUserDirSymlink(t *testing.T) {
	base, home, u := sudoHome(t)
	etc := filepath.Join(base, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	// ~/.aigate -> a root directory: root must not create files in it.
	if err := os.Symlink(etc, filepath.Join(home, DirName)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(home, DirName)
	if err := EnsureDir(dir, u); err != nil {
		t.Fatal(err) // it exists (through the link) and is a directory
	}
	if err := WriteFileAtomic(filepath.Join(dir, GlobalName), []byte("mode: audit\n"), 0o644, u); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("config written into a root directory through ~/.aigate: err = %v, want permission denied", err)
	}
	assertOnly(t, etc)
	// MkdirAll through a link to a root directory is refused the same way.
	if err := EnsureDir(filepath.Join(dir, "sub"), u); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("EnsureDir in a root directory: err = %v, want permission denied", err)
	}
}

func TestSudoLoadReadsAsTheUser(t *testing.T) {
	base, home, u := sudoHome(t)
	secret := filepath.Join(base, "secret.yaml")
	rootFile(t, secret, "mode: audit\n", 0o600)
	p := &Paths{User: u, Dir: filepath.Join(home, DirName), Global: secret, Trust: filepath.Join(home, DirName, TrustName), ProjectRoot: home, WorkDir: home}
	if _, err := Load(p); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Load of a root-only --config: err = %v, want permission denied", err)
	}
	// Root acting for itself still reads it.
	p.User = &User{Home: home}
	l, err := Load(p)
	if err != nil || string(l.GlobalData) != "mode: audit\n" {
		t.Errorf("Load as root: %v, data %q", err, l.GlobalData)
	}
}

func TestDoKeepsTheIdentityOnItsThread(t *testing.T) {
	base, home, u := sudoHome(t)
	created := filepath.Join(home, "made-by-user")
	if err := u.Do(func() error { return os.WriteFile(created, nil, 0o600) }); err != nil {
		t.Fatal(err)
	}
	if uid, gid := owner(t, created); uid != sudoUID || gid != sudoUID {
		t.Errorf("file made in Do owned by %d:%d, want %d:%d", uid, gid, sudoUID, sudoUID)
	}
	// Afterwards (and on every other thread) the process is root again:
	// a root-only file is readable.
	secret := filepath.Join(base, "root-only")
	rootFile(t, secret, "x", 0o600)
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := os.ReadFile(secret); err != nil {
			t.Fatalf("after Do, root cannot read its own file: %v", err)
		}
	}
}

// assertOnly fails unless dir holds exactly names.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if len(got) != len(names) {
		t.Errorf("%s holds %v, want %v", dir, got, names)
		return
	}
	for i := range got {
		if got[i] != names[i] {
			t.Errorf("%s holds %v, want %v", dir, got, names)
			return
		}
	}
}

func TestWriteFileAtomicUnderSudo(t *testing.T) {
	base, _, u := sudoHome(t)
	dir := filepath.Join(base, "home")
	sub := filepath.Join(dir, ".aigate")
	if err := EnsureDir(sub, u); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(sub, "config.yaml")
	if err := WriteFileAtomic(p, []byte("a\n"), 0o644, u); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{sub, p} {
		if uid, gid := owner(t, path); uid != 65534 || gid != 65534 {
			t.Errorf("%s owned by %d:%d, want the sudo user 65534:65534", path, uid, gid)
		}
	}
	// A file someone else owns in the user's directory is replaced as the
	// user could replace it themselves, and is then theirs: root does not
	// chown on their behalf.
	if err := os.Chown(p, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("b\n"), 0o644, u); err != nil {
		t.Fatal(err)
	}
	if uid, _ := owner(t, p); uid != 65534 {
		t.Errorf("replaced file owned by %d, want the sudo user", uid)
	}
}

func owner(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}
