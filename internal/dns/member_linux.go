package dns

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// memberCheckBudget bounds one membership lookup; the query is refused
// when it runs out.
const memberCheckBudget = 200 * time.Millisecond

// memberCheck tells whether a client of the proxy is a socket of the
// proxy's own sandbox: the kernel refuses a sandbox's connects to other
// sandboxes' proxies, and this is the proxy's own answer to the same
// question, so that neither alone decides. sock_diag gives the client
// socket's cgroup (that of the task that created it), which must be the
// sandbox's cgroup or one below it.
type memberCheck struct {
	dir string // the sandbox's cgroup directory
	id  uint64 // its cgroup id

	mu   sync.Mutex // one lookup at a time on the netlink socket
	diag *diagSock
}

// newMemberCheck opens the sock_diag socket in the calling thread's network
// namespace, which must be that of the listener l.
func newMemberCheck(cgroupDir string, l any) (*memberCheck, error) {
	id, err := cgroupIno(cgroupDir)
	if err != nil {
		return nil, err
	}
	d, err := openDiag()
	if err != nil {
		return nil, err
	}
	if err := sameNetns(d.fd, l); err != nil {
		d.close()
		return nil, err
	}
	return &memberCheck{dir: cgroupDir, id: id, diag: d}, nil
}

func (m *memberCheck) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.diag.close()
}

// member reports whether p's socket belongs to the sandbox; an error says
// it cannot tell. A kernel that does not report socket cgroups (before 5.9)
// cannot tell either: the query is answered, the kernel-side refusal being
// the only one.
func (m *memberCheck) member(p peer) (bool, error) {
	proto := uint8(syscall.IPPROTO_UDP)
	if p.tcp {
		proto = syscall.IPPROTO_TCP
	}
	m.mu.Lock()
	msg, err := m.diag.lookup(proto, p.client, p.proxy, time.Now().Add(memberCheckBudget))
	m.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("look up client %s: %w", p.client, err)
	}
	if msg.local.Port() != p.client.Port() {
		return false, fmt.Errorf("sock_diag answered with a socket on port %d, not %d", msg.local.Port(), p.client.Port())
	}
	if msg.cgroupID == 0 || msg.cgroupID == m.id {
		return true, nil
	}
	return below(m.dir, msg.cgroupID, ownerMaxCgroups), nil
}

// below reports whether a cgroup with id lives below dir, looking at most
// at n cgroups.
func below(dir string, id uint64, n int) bool {
	queue := []string{dir}
	for len(queue) > 0 && n > 0 {
		d := queue[0]
		queue = queue[1:]
		for _, s := range subdirs(d, n) {
			n--
			if ino, err := cgroupIno(s); err == nil && ino == id {
				return true
			}
			queue = append(queue, s)
		}
	}
	return false
}

// cgroupIno is a cgroup v2 directory's id: its inode number.
func cgroupIno(dir string) (uint64, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, fmt.Errorf("sandbox cgroup: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("sandbox cgroup %s: no inode number", dir)
	}
	return st.Ino, nil
}
