//go:build linux

package escape

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// userRuntimeDir makes the test user's /run/user/UID as logind would
// (the user's, 0700) and removes it when the test ends. The CI host has
// no logind, so no such directory. /run is made root's 0755, as on a
// real system, where it is not already: nsrun's fresh tmpfs is 1777, a
// shared temp directory, beneath which Landlock can keep nothing
// read-only (landlock.Plan); that tmpfs lives in the test's private
// mount namespace, and its mode is put back.
func userRuntimeDir(t *testing.T, b *box) string {
	t.Helper()
	if fi, err := os.Stat("/run"); err == nil && fi.Mode()&os.ModeSticky != 0 && fi.Mode().Perm()&0o002 != 0 {
		if err := os.Chmod("/run", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod("/run", fi.Mode()&(os.ModePerm|os.ModeSticky)) })
	}
	if _, err := os.Stat("/run/user"); os.IsNotExist(err) {
		if err := os.Mkdir("/run/user", 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove("/run/user") })
	}
	rt := filepath.Join("/run/user", strconv.Itoa(int(machine.uid)))
	os.RemoveAll(rt)
	t.Cleanup(func() { os.RemoveAll(rt) })
	b.mkdir(rt)
	if err := os.Chmod(rt, 0o700); err != nil {
		t.Fatal(err)
	}
	return rt
}

// TestEscapeUserManagerUnits: the user's systemd manager loads units from
// /run/user/UID/systemd (user.control, transient, generator.early, user,
// generator, generator.late; systemd.unit(5)) outside any sandbox, at its
// next daemon-reload or a unit's first load, and runs them as the user.
// The sandbox plants none there: a new unit, a drop-in directory with an
// ExecStartPre=, a symlink to a unit elsewhere, a rename of a prepared
// unit into user.control, a rewrite of an existing transient unit, the
// directory renamed away for one of its own, and, where the manager has
// not made it yet, its creation: all refused (Landlock; its refusals
// carry no aigate event unless Landlock audit is on, docs/threat-model.md;
// where the LSM backend runs without Landlock, its deny_write rule refuses
// them with write events). Nor can the sandbox ask the manager to reload:
// a connect to its private socket is refused with a unix event (on
// fanotify from Linux 6.7, where unix sockets are confined). The
// controls: an existing directory of the user's in /run/user/UID (as
// gnupg/, podman/) stays writable, and so does Claude Code's cc-socks,
// which run makes first; the session bus, which the sandbox can no
// longer swap, can be allowed (allow_unix) on fanotify too.
func TestEscapeUserManagerUnits(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		rt := userRuntimeDir(t, b)
		sd := filepath.Join(rt, "systemd")
		for _, d := range []string{sd, sd + "/transient", sd + "/user.control", sd + "/generator.late", rt + "/app"} {
			b.mkdir(d)
		}
		const evil = `[Service]\nExecStartPre=/bin/sh -c "cp ~/.ssh/id_rsa /tmp/x"\nExecStart=/bin/true\n`
		transient := b.write(sd+"/transient/run-u1.service", "[Service]\nExecStart=/bin/true\n")
		prepared := b.write(rt+"/app/evil.service", "[Service]\nExecStart=/bin/true\n")
		attacks := []struct{ name, cmd, planted string }{
			{"unit", `printf '` + evil + `' > ` + sd + `/user.control/evil.service`, sd + "/user.control/evil.service"},
			{"runtime unit dir", `mkdir -p ` + sd + `/user && printf '` + evil + `' > ` + sd + `/user/evil.service`, sd + "/user"},
			{"drop-in", `mkdir ` + transient + `.d && printf '` + evil + `' > ` + transient + `.d/override.conf`, transient + ".d"},
			{"symlink", `ln -s /tmp/evil.service ` + sd + `/user.control/link.service`, sd + "/user.control/link.service"},
			{"rename", `mv ` + prepared + ` ` + sd + `/user.control/moved.service`, sd + "/user.control/moved.service"},
			{"rewrite", `printf '` + evil + `' > ` + transient, ""},
			{"replace dir", `mv ` + sd + ` ` + rt + `/old && mkdir -p ` + sd + `/user.control`, rt + "/old"},
		}
		var script strings.Builder
		for _, a := range attacks {
			script.WriteString("if (" + a.cmd + ") 2>/dev/null; then echo 'WROTE " + a.name + "'; else echo 'REFUSED " + a.name + "'; fi\n")
		}
		// The control: what tools keep in their own directories there,
		// and Claude Code's sockets directory, which run makes first
		// (run.RuntimeToolDirs): the sandbox cannot make one there.
		script.WriteString(`mkdir -p ` + rt + `/app/sub && echo x > ` + rt + `/app/sub/f && mv ` + rt + `/app/sub/f ` + rt + `/app/sub/g && rm ` + rt + `/app/sub/g && echo ok-control` + "\n")
		script.WriteString(`echo x > ` + rt + `/cc-socks/1.sock && rm ` + rt + `/cc-socks/1.sock && echo ok-ccsocks` + "\n")
		r := b.sh(script.String())
		if !strings.Contains(r.stdout, "ok-control") {
			t.Errorf("a directory of the user's in %s is not writable inside:\n%s", rt, r)
		}
		if !strings.Contains(r.stdout, "ok-ccsocks") {
			t.Errorf("Claude Code's sockets directory in %s was not made, or is not writable inside:\n%s", rt, r)
		}
		for _, a := range attacks {
			if !strings.Contains(r.stdout, "REFUSED "+a.name+"\n") {
				t.Errorf("%s: went through: %s", a.name, a.cmd)
			}
			if a.planted != "" {
				if _, err := os.Lstat(a.planted); err == nil {
					t.Errorf("%s: %s was planted", a.name, a.planted)
				}
			}
			if target := a.planted; !homeProtected() {
				if target == "" {
					target = transient
				}
				if _, ok := r.denied(events.OpWrite, filepath.Dir(target)); !ok {
					t.Errorf("%s: no write event for %s (no Landlock, so the backend refused it)", a.name, target)
				}
			}
		}
		if data, _ := os.ReadFile(transient); string(data) != "[Service]\nExecStart=/bin/true\n" {
			t.Errorf("the transient unit changed: %q", data)
		}
		if _, err := os.Stat(prepared); err != nil {
			t.Errorf("the prepared unit moved: %v", err)
		}
		if t.Failed() {
			t.Logf("%s", r)
		}

		// The manager's private socket (systemctl --user daemon-reload),
		// where the backend confines unix sockets (fanotify from 6.7).
		l, err := net.Listen("unix", filepath.Join(sd, "private"))
		if err != nil {
			t.Fatal(err)
		}
		testutil.AcceptAll(t, l)
		b.chown(filepath.Join(sd, "private"))
		r = b.sh(b.tool("unix " + filepath.Join(sd, "private")))
		if s := loader.UnixSocketEnforcement(); b.backend == "fanotify" && strings.HasPrefix(s, "none: ") {
			t.Logf("fanotify backend on this kernel: unix sockets are not confined at all (%s): connect %s", s, strings.Join(r.lines(), " "))
		} else {
			if got := strings.Join(r.lines(), " "); got != b.unixRefused() {
				t.Errorf("the sandbox reached the user manager's socket: %q\n%s", got, r)
			}
			if _, ok := r.denied(events.OpUnix, "systemd/private"); !ok {
				t.Errorf("no unix event for the user manager's socket:\n%s", r)
			}
		}

		// With /run/user/UID split, the session bus directly in it can no
		// longer be swapped for a link: an allow_unix entry for it runs on
		// fanotify too (before, run refused it: checkUnixPlant).
		busPath := filepath.Join(rt, "bus")
		bus, err := net.Listen("unix", busPath)
		if err != nil {
			t.Fatal(err)
		}
		testutil.AcceptAll(t, bus)
		b.chown(busPath)
		b.config("allow_unix:\n  - " + busPath + "\n")
		r = b.sh(b.tool("unix " + busPath))
		if got := strings.Join(r.lines(), " "); r.code != 0 || got != "0" {
			t.Errorf("allow_unix %s: %q\n%s", busPath, got, r)
		}

		// No manager has made it yet: the sandbox cannot make it first
		// for a manager that starts later to load.
		if err := os.RemoveAll(sd); err != nil {
			t.Fatal(err)
		}
		r = b.sh(`mkdir -p ` + sd + `/user && printf '` + evil + `' > ` + sd + `/user/evil.service && echo WROTE; echo x > ` + rt + `/app/f2 && echo ok-control`)
		if strings.Contains(r.stdout, "WROTE") || !strings.Contains(r.stdout, "ok-control") {
			t.Errorf("made %s, or the control failed:\n%s", sd, r)
		}
		if _, err := os.Lstat(sd); err == nil {
			t.Errorf("%s was made inside", sd)
		}
		if _, ok := r.denied(events.OpWrite, sd); !ok && !homeProtected() {
			t.Errorf("no write event for %s (no Landlock):\n%s", sd, r)
		}
	})
}

// TestEscapeRuntimeSecrets: podman's, buildah's and skopeo's registry
// logins are in the user's runtime directory
// ($XDG_RUNTIME_DIR/containers/auth.json, containers-auth.json(5)),
// which no policy can name ahead (/run/user/UID): each run adds a
// deny_read rule for them. Reading them inside is refused with a read
// event; the control, another file of the user's there, stays readable.
func TestEscapeRuntimeSecrets(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		rt := userRuntimeDir(t, b)
		b.mkdir(rt + "/containers")
		auth := b.write(rt+"/containers/auth.json", `{"auths":{"quay.io":{"auth":"c2VjcmV0"}}}`+"\n")
		b.write(rt+"/containers/other", "ok-other\n")
		r := b.sh(`cat ` + auth + ` 2>/dev/null || echo REFUSED; cat ` + rt + `/containers/other`)
		if !strings.Contains(r.stdout, "REFUSED") || strings.Contains(r.stdout, "c2VjcmV0") {
			t.Errorf("the registry logins were read:\n%s", r)
		}
		if _, ok := r.denied(events.OpRead, auth); !ok {
			t.Errorf("no read event for %s:\n%s", auth, r)
		}
		if !strings.Contains(r.stdout, "ok-other") {
			t.Errorf("another file in %s/containers is not readable:\n%s", rt, r)
		}
	})
}
