//go:build linux

package escape

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// What a killed suite leaves. go test's timeout kills the test binary
// without running TestMain's teardown: the suite's user and group, its
// directory (binary, homes, trust records), whatever of the user's still
// runs and an agent that did not finish its SIGTERM (Pdeathsig) stay on
// the machine.
// Each suite directory names its owner (ownerFile: pid, start time, user),
// and the next suite to start removes those whose owner is gone. A suite
// that is running (another package's, a concurrent CI job's) is left
// alone: its owner is alive, with the start time it wrote.

const ownerFile = "owner"

// writeOwner records this binary as dir's owner, with the suite's user.
func writeOwner(dir, user string) error {
	start, err := procStart(os.Getpid())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ownerFile), fmt.Appendf(nil, "%d %s %s\n", os.Getpid(), start, user), 0o644)
}

// procStart is the start time of pid (field 22 of /proc/pid/stat, in clock
// ticks since boot): with the pid, it names one process, not a reuse.
func procStart(pid int) (string, error) {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	i := bytes.LastIndexByte(st, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(string(st[i+1:]))
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f[19], nil // field 22, counted from 3 after the comm
}

// reapStale removes what killed suites left in tmp: the processes of
// their user, the user and group, the directory. A directory without an
// owner file (an older suite's, or one being made) is left alone.
func reapStale(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, "aigate-escape-*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		var pid int
		var start, name string
		if _, err := fmt.Sscanf(string(data), "%d %s %s", &pid, &start, &name); err != nil || !strings.HasPrefix(name, "aiesc") {
			continue
		}
		if now, err := procStart(pid); err == nil && now == start {
			continue // running
		}
		killAgents(filepath.Join(dir, "aigate"))
		killUser(name)
		_, _ = sandbox.Sweep(sandbox.DefaultParent)
		if _, err := exec.LookPath("userdel"); err == nil {
			_ = exec.Command("userdel", name).Run()
			_ = exec.Command("groupdel", name).Run()
		}
		os.RemoveAll(dir)
	}
}

// killAgents ends the processes that execute bin, the suite's copy of
// aigate: its agents run as root, and the Pdeathsig that should have ended
// them with the test binary is a SIGTERM they may not finish. A SIGTERM
// first, so that an agent removes what it made; then a SIGKILL.
func killAgents(bin string) {
	pids := e2e.ProcessesOf(bin)
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		for !e2e.ProcessGone(p) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !e2e.ProcessGone(p) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// killUser kills every process of the suite user name, by uid, until none
// is left (at most a few seconds).
func killUser(name string) {
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		return
	}
	uid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || uid == 0 {
		return
	}
	for range 50 {
		pids := processesOfUID(uint32(uid))
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func processesOfUID(uid uint32) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) == nil && st.Uid == uid {
			pids = append(pids, pid)
		}
	}
	return pids
}
