//go:build linux

package lsm

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

func TestLSMSecondPaths(t *testing.T) {
	dir := tempDir(t)
	secret := touch(t, dir+"/secret")
	key := touch(t, dir+"/vault/key")
	os.MkdirAll(dir+"/pub", 0o755)
	link := dir + "/pub/link"
	if err := os.Link(secret, link); err != nil {
		t.Fatal(err)
	}
	l := openLSM(t)
	p := compiled(
		ruleSpec{policy.AccessRead, "paths", secret},         // 1
		ruleSpec{policy.AccessRead, "paths", dir + "/vault"}, // 2
	)
	sb := addSandbox(t, l, p, policy.ModeEnforce)

	expectDenied(t, l, sb, events.KindFile, link, 1, "open", link, "r")
	// A bind mount of the protected directory: caught by the directory's inode.
	mnt := dir + "/mnt"
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount(dir+"/vault", mnt, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	expectDenied(t, l, sb, events.KindFile, mnt+"/key", 2, "open", mnt+"/key", "r")
	// /proc/PID/root leads to the same file.
	expectDenied(t, l, sb, events.KindFile, key, 2, "open", "/proc/self/root"+key, "r")
	noEvent(t, l)
}
