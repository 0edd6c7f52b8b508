package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/doctor"
)

// fakeProbes are doctor's probes with fixed answers, as on this kind of
// machine: BPF LSM refused, the rest working.
func fakeProbes(f *cmdutil.Factory) {
	f.ProbeLSM = func() error {
		return &doctor.ProbeError{
			Reason: "the kernel refused to load a BPF LSM program: BPF_PROG_LOAD returned EPERM although running as root",
			Fix:    "use the fanotify backend (backend: fanotify) or another kernel",
		}
	}
	f.ProbeFanotify = func() error { return nil }
	f.ProbeSockAddr = func() error { return nil }
	f.ProbeUnix = func() (string, error) { return "cgroup connect_unix/sendmsg_unix: by socket name", nil }
}

// runDoctorAs runs aigate args as euid on the sandbox env's fake tree.
func runDoctorAs(e *sandboxEnv, euid int, probes func(*cmdutil.Factory), args ...string) (string, cmdutil.ExitCode) {
	var out, errb bytes.Buffer
	f := &cmdutil.Factory{
		In: strings.NewReader(""), Out: &out, Err: &errb,
		Env: config.Env{
			Getenv: os.Getenv,
			Euid:   euid,
			Getwd:  func() (string, error) { return e.proj, nil },
		},
		DoctorRoot:    e.fakeRoot,
		KernelRelease: "6.18.0-test",
	}
	if probes != nil {
		probes(f)
	}
	code := Main(context.Background(), f, args)
	return out.String() + errb.String(), code
}

func TestDoctorVerdicts(t *testing.T) {
	e := newSandboxEnv(t)
	out, code := runDoctorAs(e, 0, fakeProbes, "doctor")
	if code != cmdutil.ExitOK {
		t.Fatalf("doctor: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"  BPF LSM: not usable: the kernel refused to load a BPF LSM program: BPF_PROG_LOAD returned EPERM although running as root — fix: use the fanotify backend (backend: fanotify) or another kernel\n",
		"  fanotify: usable\n",
		"  network (cgroup sock_addr): usable\n",
		"  unix sockets: cgroup connect_unix/sendmsg_unix: by socket name\n",
		"backend auto would pick now: fanotify\n",
		"  lsm       not usable  every open and exec anywhere",
		"  fanotify  usable      opens and execs of existing files",
		doctor.ReadmeTable,
		"ready: fanotify backend",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Not checked without root") {
		t.Errorf("as root, nothing should need root:\n%s", out)
	}
}

// Without root, doctor names what it could not check, runs no probe, and
// does not fail for it.
func TestDoctorNotRoot(t *testing.T) {
	e := newSandboxEnv(t)
	ran := false
	probes := func(f *cmdutil.Factory) {
		fakeProbes(f)
		f.ProbeLSM = func() error { ran = true; return nil }
		f.ProbeFanotify = f.ProbeLSM
		f.ProbeSockAddr = f.ProbeLSM
		f.ProbeUnix = func() (string, error) { ran = true; return "", nil }
	}
	out, code := runDoctorAs(e, 1000, probes, "doctor")
	if ran {
		t.Error("a probe ran without root")
	}
	if code != cmdutil.ExitOK {
		t.Errorf("exit %d: checks that need root must not fail doctor\n%s", code, out)
	}
	for _, want := range []string{
		"  fanotify: not checked: needs root (sudo aigate doctor)\n",
		"  network (cgroup sock_addr): not checked: needs root (sudo aigate doctor)\n",
		"Not checked without root: bpf-lsm-load, fanotify, sock-addr, unix-sockets; run `sudo aigate doctor` for them.",
		"backend auto would pick now: lsm, if its trial load works (not checked without root), else fanotify",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAIL") {
		t.Errorf("nothing failed, yet:\n%s", out)
	}
}

func TestDoctorJSON(t *testing.T) {
	e := newSandboxEnv(t)
	out, code := runDoctorAs(e, 0, func(f *cmdutil.Factory) {
		fakeProbes(f)
		f.ProbeSockAddr = func() error { return errors.New("attach: operation not supported") }
	}, "doctor", "--json")
	if code != cmdutil.ExitError {
		t.Errorf("exit %d: no backend can run without sock_addr programs", code)
	}
	var r doctor.Report
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	states := map[string]string{}
	for _, v := range r.Verdicts {
		states[v.Name] = v.State
	}
	want := map[string]string{"bpf-lsm": doctor.NotUsable, "fanotify": doctor.Usable, "sock-addr": doctor.NotUsable, "unix-sockets": doctor.Confined}
	for k, v := range want {
		if states[k] != v {
			t.Errorf("verdict %s = %q, want %q", k, states[k], v)
		}
	}
	if r.Ready || r.Backend != "" || len(r.Backends) != 2 || r.Backends[1].State != doctor.NotUsable {
		t.Errorf("ready=%v backend=%q backends=%+v", r.Ready, r.Backend, r.Backends)
	}
}
