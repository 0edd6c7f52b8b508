//go:build linux

package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/cmdutil"
)

// TestRunLoosenedPolicyAskedOnTerminal: the agent `sudo aigate run` embeds
// keeps the global policy last accepted; a ~/.aigate/config.yaml that
// allows more is refused before the command starts. On a terminal the
// run shows what loosened and asks (the command has not started: the
// keyboard is the user's); "n" refuses, "y" accepts and runs, and the
// acceptance is recorded for the next run. Without a terminal nothing is
// asked, and the refusal names `sudo aigate policy accept`.
func TestRunLoosenedPolicyAskedOnTerminal(t *testing.T) {
	e := newRunEnv(t, 0)
	e.requireCgroup(t)
	records := filepath.Join(t.TempDir(), "trust")
	global := filepath.Join(e.home, ".aigate", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(global), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(global, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	marker := filepath.Join(e.proj, "started")
	run := func(tty bool, answer string) (cmdutil.ExitCode, string, bool) {
		t.Helper()
		os.Remove(marker)
		e.answer(t, tty, answer)
		code, msg := e.run(t, &runOptions{TrustDir: records, Args: []string{"touch", marker}}, newRunFake(), nil)
		_, err := os.Stat(marker)
		return code, msg + "\n" + e.out.String(), err == nil
	}

	write("deny_read: [.env]\nnet: deny\n")
	if code, out, ran := run(false, ""); code != cmdutil.ExitOK || !ran {
		t.Fatalf("first run: exit %d, ran %v; want it to record the policy without asking and run:\n%s", code, ran, out)
	}
	write("deny_read: []\nnet: deny\n")

	code, out, ran := run(false, "")
	if code != cmdutil.ExitPolicy || ran || !strings.Contains(out, `deny_read ".env" removed`) || !strings.Contains(out, "sudo aigate policy accept") {
		t.Fatalf("no terminal: exit %d, ran %v; want refused (%d), naming the loosening and `sudo aigate policy accept`:\n%s", code, ran, cmdutil.ExitPolicy, out)
	}
	if strings.Contains(out, "[y/N]") {
		t.Errorf("no terminal, yet the run asked:\n%s", out)
	}

	code, out, ran = run(true, "n\n")
	if code != cmdutil.ExitPolicy || ran || !strings.Contains(out, "Accept "+global+" as your policy and run? [y/N]") {
		t.Fatalf("terminal, answer n: exit %d, ran %v; want asked, then refused:\n%s", code, ran, out)
	}

	code, out, ran = run(true, "y\n")
	if code != cmdutil.ExitOK || !ran || !strings.Contains(out, `deny_read ".env" removed`) {
		t.Fatalf("terminal, answer y: exit %d, ran %v; want shown what loosened, accepted and run:\n%s", code, ran, out)
	}
	if code, out, ran := run(false, ""); code != cmdutil.ExitOK || !ran {
		t.Fatalf("after accepting on the terminal, the next run: exit %d, ran %v:\n%s", code, ran, out)
	}
}

// TestRunPolicyRecordsBadRefused: records the embedded agent cannot trust
// fail closed. Corrupt records, or a directory someone but root could
// write, refuse the run before the command starts, naming the file or
// directory and what to do.
func TestRunPolicyRecordsBadRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, records string)
		want  []string
	}{
		{"corrupt", func(t *testing.T, records string) {
			if err := os.WriteFile(filepath.Join(records, "0.policy.yaml"), []byte("policies: [\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"0.policy.yaml", "corrupt", "remove the file"}},
		{"writable", func(t *testing.T, records string) {
			if err := os.Chmod(records, 0o777); err != nil {
				t.Fatal(err)
			}
		}, []string{"only root can write", "chmod 755"}},
		{"symlink", func(t *testing.T, records string) {
			real := records + ".real"
			if err := os.Rename(records, real); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(real, records); err != nil {
				t.Fatal(err)
			}
		}, []string{"symbolic link"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRunEnv(t, 0)
			e.requireCgroup(t)
			records := filepath.Join(t.TempDir(), "trust")
			if err := os.Mkdir(records, 0o755); err != nil {
				t.Fatal(err)
			}
			tc.spoil(t, records)
			marker := filepath.Join(e.proj, "started")
			code, msg := e.run(t, &runOptions{TrustDir: records, Args: []string{"touch", marker}}, newRunFake(), nil)
			if _, err := os.Stat(marker); err == nil || code == cmdutil.ExitOK {
				t.Fatalf("the command ran (exit %d) with records it cannot trust:\n%s", code, msg)
			}
			for _, w := range append(tc.want, records) {
				if !strings.Contains(msg, w) {
					t.Errorf("the refusal does not say %q:\n%s", w, msg)
				}
			}
		})
	}
}

// answer makes the next run's terminal (tty) or script (!tty) read answer,
// with the output so far cleared. The answer comes from a file, as a
// terminal is: the command's helper, started before the sandbox is asked
// for, is handed it and reads nothing until its go-ahead, so the answer
// is left for the prompt. (A reader that is not a file would be copied
// into the helper's stdin by os/exec at once.)
func (e *runEnv) answer(t *testing.T, tty bool, answer string) {
	t.Helper()
	e.out.mu.Lock()
	e.out.b.Reset()
	e.out.mu.Unlock()
	e.f.Interactive = func() bool { return tty }
	in, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	if _, err := w.WriteString(answer); err != nil {
		t.Fatal(err)
	}
	w.Close()
	e.f.In = in
}
