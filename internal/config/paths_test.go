package config

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/testutil"
)

func testEnv(vars map[string]string, euid int, wd string) Env {
	return Env{
		Getenv: func(k string) string { return vars[k] },
		Euid:   euid,
		Getwd:  func() (string, error) { return wd, nil },
	}
}

func TestLocate(t *testing.T) {
	home := t.TempDir()
	proj := t.TempDir()
	sub := filepath.Join(proj, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	uid := os.Geteuid()
	if uid == 0 {
		uid = 1000 // pretend not to be root, so SUDO_* must be ignored
	}

	p, err := Locate(LocateOptions{Env: testEnv(map[string]string{"HOME": home, "SUDO_USER": "root"}, uid, sub)})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(home, ".aigate", "config.yaml"); p.Global != want {
		t.Errorf("Global = %s, want %s", p.Global, want)
	}
	if want := filepath.Join(home, ".aigate", "trusted.yaml"); p.Trust != want {
		t.Errorf("Trust = %s, want %s", p.Trust, want)
	}
	if p.Project != "" || p.ProjectRoot != sub {
		t.Errorf("no project file: Project = %q, ProjectRoot = %q, want \"\" and %s", p.Project, p.ProjectRoot, sub)
	}
	if got := p.ProjectFileFor(); got != filepath.Join(sub, ".aigate.yaml") {
		t.Errorf("ProjectFileFor = %s", got)
	}

	// The nearest ancestor's file wins, and its directory is the root.
	if err := os.WriteFile(filepath.Join(proj, ".aigate.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err = Locate(LocateOptions{Env: testEnv(map[string]string{"HOME": home}, uid, sub)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Project != filepath.Join(proj, ".aigate.yaml") || p.ProjectRoot != proj {
		t.Errorf("Project = %q, ProjectRoot = %q, want the file in %s", p.Project, p.ProjectRoot, proj)
	}

	// --config beats AIGATE_CONFIG beats the default; ~ expands.
	env := testEnv(map[string]string{"HOME": home, "AIGATE_CONFIG": "~/other.yaml"}, uid, sub)
	if p, _ := Locate(LocateOptions{Env: env}); p.Global != filepath.Join(home, "other.yaml") {
		t.Errorf("AIGATE_CONFIG: Global = %s", p.Global)
	}
	if p, _ := Locate(LocateOptions{Env: env, ConfigFile: "/etc/x.yaml"}); p.Global != "/etc/x.yaml" || p.Trust != filepath.Join(home, ".aigate", "trusted.yaml") {
		t.Errorf("--config: Global = %s, Trust = %s", p.Global, p.Trust)
	}
	if got := p.Pretty(filepath.Join(home, ".aigate", "config.yaml")); got != "~/.aigate/config.yaml" {
		t.Errorf("Pretty = %s", got)
	}
	if got := p.Pretty(home + "x/y"); got != home+"x/y" {
		t.Errorf("Pretty of a sibling of home = %s", got)
	}
}

func TestInvokingUserUnderSudo(t *testing.T) {
	u, err := user.LookupId("65534")
	if err != nil {
		testutil.SkipUnlessKernel(t, fmt.Sprintf("no uid 65534 in the user database: %v", err))
	}
	// As root with SUDO_UID set: the sudo user's home from the user
	// database, never HOME (which sudo may have pointed at /root).
	got, err := InvokingUser(testEnv(map[string]string{"HOME": "/root", "SUDO_UID": "65534", "SUDO_USER": "someone-else"}, 0, "/"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Home != u.HomeDir || got.UID != 65534 || !got.Sudo {
		t.Errorf("got %+v, want home %s uid 65534 via sudo", got, u.HomeDir)
	}
	// sudo from a root shell.
	got, err = InvokingUser(testEnv(map[string]string{"HOME": "/root", "SUDO_UID": "0"}, 0, "/"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Home != "/root" || got.Sudo {
		t.Errorf("sudo by root: got %+v", got)
	}
	if _, err := InvokingUser(testEnv(map[string]string{"SUDO_USER": "no-such-user-aigate"}, 0, "/")); err == nil {
		t.Error("unknown SUDO_USER: no error")
	}
}

func TestTrustStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "trusted.yaml")
	ts, err := ReadTrustStore(path)
	if err != nil {
		t.Fatal(err)
	}
	const proj = "/p/.aigate.yaml"
	content := []byte("allow_net: [x.org]\n")
	if s := ts.State(proj, content); s != Untrusted {
		t.Errorf("new store: %v", s)
	}
	ts.Set(proj, content, time.Now())
	if err := ts.Write(path, nil); err != nil {
		t.Fatal(err)
	}
	ts, err = ReadTrustStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if s := ts.State(proj, content); s != Trusted {
		t.Errorf("after Set: %v", s)
	}
	if s := ts.State(proj, append(content, ' ')); s != Changed {
		t.Errorf("one byte more: %v", s)
	}
	if s := ts.State("/other/.aigate.yaml", content); s != Untrusted {
		t.Errorf("same content at another path: %v", s)
	}
	ts.Set(proj, []byte("v2"), time.Now())
	if len(ts.Entries) != 1 || ts.State(proj, []byte("v2")) != Trusted {
		t.Errorf("re-trust must replace the entry: %+v", ts.Entries)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("trust store mode: %v %v", fi.Mode(), err)
	}
	os.WriteFile(path, []byte("trusted: {"), 0o600)
	if _, err := ReadTrustStore(path); err == nil {
		t.Error("corrupt store: no error")
	}
}
