//go:build linux

package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/aigate-dev/aigate/internal/api"
)

// checkPaths refuses a home or project root that the (non-root) peer
// could not list itself. The agent walks those trees as root and marks
// every directory in them (fanotify), so a group member naming someone
// else's tree would make root walk it and put every opener there into
// permission round trips. Owned by the peer, or readable and searchable
// by it through its group or others' bits, with every parent searchable:
// what `ls` as that user would allow.
//
// Checked once, before the walk: the peer, owning a parent, can swap a
// checked directory for a symlink in between (docs/threat-model.md).
func checkPaths(p api.Peer, req *api.CreateRequest) *api.Error {
	if p.Root() {
		return nil
	}
	cred, err := readCred(p.PID)
	if err == nil {
		err = p.Verify() // the groups read were the peer's, not a successor's
	}
	if err != nil {
		return &api.Error{Code: api.CodeForbidden, Message: fmt.Sprintf("read your process's groups: %v", err)}
	}
	for _, c := range []struct{ what, path string }{{"home", req.Home}, {"project root", req.ProjectRoot}} {
		if err := cred.mayList(c.path); err != nil {
			return &api.Error{Code: api.CodeForbidden, Message: fmt.Sprintf("%s %s: %v: name a directory of yours", c.what, c.path, err)}
		}
	}
	return nil
}

// cred is who a process is for file access: its filesystem uid, its
// filesystem gid and its supplementary groups.
type cred struct {
	uid    uint32
	groups map[uint32]bool
}

func readCred(pid int) (cred, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return cred{}, err
	}
	c := cred{groups: map[uint32]bool{}}
	var haveUID, haveGID bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		f := strings.Fields(v)
		switch {
		case k == "Uid" && len(f) == 4: // real, effective, saved, filesystem
			n, err := strconv.ParseUint(f[3], 10, 32)
			c.uid, haveUID = uint32(n), err == nil
		case k == "Gid" && len(f) == 4:
			n, err := strconv.ParseUint(f[3], 10, 32)
			c.groups[uint32(n)], haveGID = true, err == nil
		case k == "Groups":
			for _, g := range f {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil {
					c.groups[uint32(n)] = true
				}
			}
		}
	}
	if !haveUID || !haveGID {
		return cred{}, errors.New("unreadable /proc status")
	}
	return c, nil
}

// mayList says whether c may read and search directory dir and search
// every directory above it.
func (c cred) mayList(dir string) error {
	if err := c.may(dir, 0o5); err != nil {
		return err
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if err := c.may(d, 0o1); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		if d == "/" {
			return nil
		}
	}
}

// may checks the permission bits want (r=4, w=2, x=1) the way the kernel
// would for c (no ACLs: a directory opened to c only by an ACL is refused,
// which fails closed). The owner may always: they could chmod.
func (c cred) may(path string, want os.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("no owner")
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	mode := fi.Mode().Perm()
	switch {
	case st.Uid == c.uid:
		return nil
	case c.groups[st.Gid]:
		mode >>= 3
	}
	if mode&want != want {
		return fmt.Errorf("belongs to uid %d and is not open to you (mode %s)", st.Uid, fi.Mode().Perm())
	}
	return nil
}
