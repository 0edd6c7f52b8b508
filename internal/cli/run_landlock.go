//go:build linux

package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/policy"
)

// LandlockEnv set to "optional" lets `aigate run` start a command on the
// fanotify backend where the kernel has no Landlock: the command can then
// ptrace, read the memory of and signal the user's processes outside the
// sandbox (docs/threat-model.md). Unset, run refuses.
const LandlockEnv = "AIGATE_LANDLOCK"

// landlockOptions is the domain the command enters in the sandbox: fenced
// off from the user's other processes, and the home read-only except the
// project (and the git work tree around the working directory), the temp
// directory, the tools' state and the policy's writable list.
func landlockOptions(pol *policy.Policy, backend, home string, paths *config.Paths, getenv func(string) string) landlock.Options {
	opts := landlock.Options{
		// The LSM backend's own hooks refuse ptrace and signals across
		// the sandbox's boundary; fanotify has nothing else.
		Required: backend == string(policy.BackendFanotify) && getenv(LandlockEnv) != "optional",
		Home:     home,
	}
	for _, r := range pol.AllowUnix {
		if strings.HasPrefix(r.Pattern, "@") {
			opts.AbstractUnix = true
		}
	}
	w := append([]string{}, landlock.DefaultWritable...)
	w = append(w, paths.ProjectRoot, paths.WorkDir)
	if top := gitTop(paths.WorkDir, home); top != "" {
		w = append(w, top)
	}
	if tmp := getenv("TMPDIR"); filepath.IsAbs(tmp) {
		w = append(w, tmp)
	}
	for _, r := range pol.Writable {
		w = append(w, expandHome(r.Pattern, home))
	}
	opts.Writable = w
	opts.Fixed = landlock.DefaultFixed
	opts.Create = landlock.DefaultCreate
	return opts
}

// gitTop is the nearest directory holding .git from dir up to (not
// including) home: git writes there on commit.
func gitTop(dir, home string) string {
	for d := filepath.Clean(dir); d != "/" && d != filepath.Clean(home); d = filepath.Dir(d) {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return d
		}
	}
	return ""
}

func expandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest)
	}
	return p
}

// checkLandlock refuses, before anything starts, a run on the fanotify
// backend that needs Landlock where the kernel has none, and says what
// the user gives up where it is missing or old. The LSM backend's hooks
// refuse ptrace and signals across the boundary by themselves, but only
// Landlock keeps the home read-only.
func checkLandlock(f *Factory, backend string, opts landlock.Options, abi int) error {
	fanotify := backend == string(policy.BackendFanotify)
	switch {
	case abi == 0 && opts.Required:
		return fmt.Errorf("the kernel has no Landlock (or it is not in the lsm= boot parameter), so on the fanotify backend the command could ptrace and signal your processes outside the sandbox and write anywhere in your home; enable Landlock (see aigate doctor), use the lsm backend, or set %s=optional to run anyway", LandlockEnv)
	case abi == 0 && fanotify:
		f.warnf("no Landlock (%s=optional): the command can ptrace and signal your processes outside the sandbox and write anywhere in your home", LandlockEnv)
	case abi == 0:
		f.warnf("no Landlock: your home stays writable inside the sandbox (only deny_write rules hold there); see aigate doctor")
	case abi < 6 && fanotify:
		f.warnf("Landlock ABI %d (kernel before 6.12): the command can still signal your processes outside the sandbox and reach abstract unix sockets outside it", abi)
	}
	return nil
}
