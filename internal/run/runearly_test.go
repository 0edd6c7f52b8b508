//go:build linux

package run

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/enforce"
)

// seesHelperFake is the run tests' fake backend that, when the agent adds
// the sandbox (the create request being served), looks for the command's
// exec helper among this process's children.
type seesHelperFake struct {
	*runFakeBackend
	arg  string // a word of the command's line that names it
	seen bool
}

func (b *seesHelperFake) Add(ctx context.Context, sb *enforce.Sandbox) error {
	b.seen = childWithArg(os.Getpid(), b.arg)
	return b.runFakeBackend.Add(ctx, sb)
}

// childWithArg reports whether a child of ppid has arg in its command line.
func childWithArg(ppid int, arg string) bool {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, the last ')' ends it.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(ppid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		if bytes.Contains(cmdline, []byte(arg)) {
			return true
		}
	}
	return false
}

// TestRunEarlyHelperNeverRunsRefused: the command's exec helper is
// started before the sandbox is asked for (it exists while the agent adds
// the sandbox), and when the agent then refuses the sandbox the command
// never runs and the helper is gone.
func TestRunEarlyHelperNeverRunsRefused(t *testing.T) {
	e := newRunEnv(t, 0)
	e.requireCgroup(t)
	marker := filepath.Join(e.proj, "started")
	be := &seesHelperFake{runFakeBackend: newRunFake(), arg: "touch " + marker}
	be.addErr = errors.New("map update refused")
	code, msg := e.run(t, &runOptions{Args: []string{"sh", "-c", "touch " + marker}}, be, nil)
	if code != cmdutil.ExitSandbox || !strings.Contains(msg, "map update refused") {
		t.Fatalf("exit %d (%s), want %d naming the refusal", code, msg, cmdutil.ExitSandbox)
	}
	if !be.seen {
		t.Fatal("no helper was waiting while the sandbox was created: the helper is not started early")
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the command ran although the sandbox was refused (%v)", err)
	}
	if childWithArg(os.Getpid(), be.arg) {
		t.Fatal("the helper outlived the refused run")
	}
	if l := e.leftovers(t); len(l) != 0 {
		t.Fatalf("cgroups left behind: %v", l)
	}
}
