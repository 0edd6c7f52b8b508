//go:build linux

package run

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/policy"
)

// userUnitDir is where the user's systemd manager looks for units at run
// time: $XDG_RUNTIME_DIR/systemd, which holds user.control, transient,
// generator.early, user, generator and generator.late (systemd.unit(5),
// "User Unit Search Path"). A unit, a drop-in (`ExecStartPre=`) or a
// symlink to one planted there is loaded by the manager outside any
// sandbox at its next daemon-reload, or at a unit's first load (socket
// or D-Bus activation), and run as the user: code that outlives the
// sandbox. So the directory is read-only for every run: Landlock keeps
// it (landlock.Options.ReadOnly) and, where the directory is missing,
// keeps the sandbox from making it in /run/user/UID (the manager would
// use one made before it starts); the run's deny_write rule has the
// kernel backend refuse or report writes there (userUnitRules). "" when
// /run/user/UID is missing or not the user's directory: nothing of the
// user's reads it then, and the sandbox cannot make it (/run/user is
// root's).
func userUnitDir(uid int) string {
	rt := "/run/user/" + strconv.Itoa(uid)
	var st syscall.Stat_t
	if err := syscall.Lstat(rt, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR || st.Uid != uint32(uid) {
		return ""
	}
	return filepath.Join(rt, "systemd")
}

// userUnitRules are the deny_write rules of this run for userUnitDir.
func userUnitRules(p *runPlan) ([]api.RunRule, []string) {
	dir := userUnitDir(p.id.uid)
	if dir == "" {
		return nil, nil
	}
	return newRunRules(p.compiled, p.id.home, []api.RunRule{{Pattern: dir + "/", By: "your systemd user manager loads units from it"}})
}

// RuntimeToolDirs are the directories tools make directly in
// /run/user/UID, which the sandbox cannot (userUnitDir's parent is split:
// Landlock grants rights to whole trees, so it grants nothing new in
// /run/user/UID itself): Claude Code's sockets directory for its
// sessions' messaging (2.1.332 makes $XDG_RUNTIME_DIR/cc-socks at every
// start, also with -p, for its PID.sock; where it cannot, it falls back
// to /tmp/cc-socks-UID, measured, away from the sessions outside).
// makeRuntimeToolDirs makes them before the sandbox exists, private as
// Claude Code requires.
var RuntimeToolDirs = []string{"cc-socks"}

// makeRuntimeToolDirs makes RuntimeToolDirs in the user's runtime
// directory, as the user, where the sandbox will not be able to
// (userUnitDir found it). Best effort, and only as the user, as
// makeToolDirs does.
func makeRuntimeToolDirs(uid int, u *config.User) {
	dir := userUnitDir(uid)
	if dir == "" || (os.Geteuid() != uid && (u == nil || !u.Sudo)) {
		return
	}
	_ = u.Do(func() error {
		for _, d := range RuntimeToolDirs {
			_ = os.Mkdir(filepath.Join(filepath.Dir(dir), d), 0o700)
		}
		return nil
	})
}

// runtimeSecrets are credentials tools keep in the user's runtime
// directory, relative to it, where no rule of a policy can name them
// ahead (/run/user/UID): podman's, buildah's and skopeo's registry
// logins (containers-auth.json(5): $XDG_RUNTIME_DIR/containers/auth.json
// is the primary file; ~/.config/containers/auth.json, a default
// deny_read, is read after it).
var runtimeSecrets = []struct{ path, why string }{
	{"containers/auth.json", "podman, buildah and skopeo keep registry logins there"},
}

// runtimeSecretRules are the deny_read rules of this run for
// runtimeSecrets in the user's runtime directory (userUnitDir's parent);
// none where the directory is missing or not the user's.
func runtimeSecretRules(p *runPlan) ([]api.RunRule, []string) {
	dir := userUnitDir(p.id.uid)
	if dir == "" {
		return nil, nil
	}
	var rules []api.RunRule
	var notes []string
	for _, s := range runtimeSecrets {
		r := api.RunRule{Pattern: filepath.Join(filepath.Dir(dir), s.path), By: s.why}
		if err := policy.CheckPattern(r.Pattern); err != nil {
			notes = append(notes, fmt.Sprintf("%s (%s): %v", r.Pattern, r.By, err))
			continue
		}
		rules = append(rules, r)
	}
	return rules, notes
}
