//go:build linux

package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// rulesConfig holds one rule of each kind. Written as the global file, it
// replaces the built-in defaults.
const rulesConfig = `mode: enforce
deny_read:
  - .env
  - secrets/
  - "*.pem"
  - id_rsa*
  - config/prod.yaml
  - ~/.aws/credentials
deny_write:
  - ~/.bashrc
deny_exec:
  - curl
net: deny
allow_loopback: false
allow_net:
  - 127.0.0.1
`

// TestE2EEachRuleKind runs one sandbox whose command tries an operation
// for each rule kind, denied and allowed neighbours alike, and asserts the
// errno it got and the event of each denial; while that sandbox is still
// alive, the test does the same operations outside it, where all succeed.
func TestE2EEachRuleKind(t *testing.T) {
	eachBackendVM(t, true, func(t *testing.T, w *world) {
		w.config(rulesConfig)
		curl := w.installHelper("curl")
		allowedIP := listen(t, "127.0.0.1:0")
		deniedIP := listen(t, "127.0.0.2:0")

		type op struct {
			op, target string
			rule       string // "" when allowed
		}
		var ops []op
		file := func(o, rel, rule string) {
			ops = append(ops, op{o, w.write(rel, "secret of "+rel+"\n"), rule})
		}
		file("read", ".env", ".env")
		file("read", "a/b/secrets/x", "secrets/")
		file("read", "certs/server.pem", "*.pem")
		file("read", "keys/id_rsa_deploy", "id_rsa*")
		file("read", "config/prod.yaml", "config/prod.yaml")
		file("read", "~/.aws/credentials", "~/.aws/credentials")
		file("write", "~/.bashrc", "~/.bashrc")
		file("read", "README.md", "")
		file("read", "config/dev.yaml", "")
		file("read", "sub/config/prod.yaml", "") // anchored: only at the root
		file("read", "certs/server.pem.txt", "")
		file("read", "~/.aws/config", "")
		ops = append(ops,
			op{"read", w.path("~/.bashrc"), ""}, // deny_write leaves reading alone
			op{"exec", curl, "curl"},
			op{"connect", allowedIP, ""},
			op{"connect", deniedIP, "allow_loopback: false"}, // a loopback destination: its own rule
		)

		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		argv := []string{self}
		for _, o := range ops {
			argv = append(argv, o.op+":"+o.target)
		}
		w.env = append(w.env, helperEnv+"=probe")
		h := w.startHeld(nil, argv...)

		// Outside the sandbox, at the same time: nothing is denied.
		for _, o := range ops {
			if err := do(o.op, o.target); err != nil {
				t.Errorf("outside the sandbox, %s %s: %v", o.op, o.target, err)
			}
		}

		r := h.finish()
		if r.code != 0 {
			t.Fatalf("the probe failed: %s", r)
		}
		got := map[string]string{}
		pid := 0
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) == 2 && f[0] == "pid":
				pid, _ = strconv.Atoi(f[1])
			case len(f) == 3:
				got[f[0]+" "+f[1]] = f[2]
			}
		}
		comm := helperComm(t)
		for _, o := range ops {
			want := "ok"
			if o.rule != "" {
				want = "EPERM"
			}
			if g := got[o.op+" "+o.target]; g != want {
				t.Errorf("in the sandbox, %s %s: got %q, want %s", o.op, o.target, g, want)
			}
			e, found := findEvent(r.events, o.op, o.target)
			switch {
			case o.rule == "" && found:
				t.Errorf("event for an allowed %s %s: %+v", o.op, o.target, e)
			case o.rule != "" && !found:
				t.Errorf("no event for the denied %s %s", o.op, o.target)
			case o.rule != "":
				kind := map[string]string{"read": "file", "write": "file", "exec": "exec", "connect": "net"}[o.op]
				w.checkEvent(e, kind, o.rule, false)
				// An exec is refused in the forked child, before it
				// takes the new name.
				if e.Comm != comm || (o.op != "exec" && e.TGID != pid) {
					t.Errorf("event %+v: want comm %q and tgid %d (the probe)", e, comm, pid)
				}
			}
		}
		if t.Failed() {
			t.Logf("run: %s\nevents: %+v", r, r.events)
		}
	})
}

// listen accepts connections on addr until the test ends and returns the
// address it got.
func listen(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// TestE2EExecNameOfMultiCallBinary: denying a program name must not deny
// other programs. Here nc is a symlink to a multi-call binary that is also
// "runner", as busybox is also sh on Alpine and in the VM. internal/resolve
// therefore does not deny the shared file by inode; BPF LSM still refuses
// the denied name (it sees the name the program was started as), fanotify
// cannot (it sees only the file) and the README says so.
func TestE2EExecNameOfMultiCallBinary(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.config("deny_exec:\n  - nc\n")
		multi := w.installHelper("multi")
		runner, nc := filepath.Join(w.bindir, "runner"), filepath.Join(w.bindir, "nc")
		for _, l := range []string{runner, nc} {
			if err := os.Symlink(multi, l); err != nil {
				t.Fatal(err)
			}
		}
		self, _ := os.Executable()
		w.env = append(w.env, helperEnv+"=probe")
		r := w.run(nil, self, "exec:"+runner, "exec:"+nc)
		if !strings.Contains(r.stdout, "exec "+runner+" ok") {
			t.Errorf("denying nc denied runner, another name of the same binary: %s\nevents: %+v", r, r.events)
		}
		if w.backend == "lsm" && !strings.Contains(r.stdout, "exec "+nc+" EPERM") {
			t.Errorf("BPF LSM let the denied name nc run: %s\nevents: %+v", r, r.events)
		}
	})
}
