//go:build linux

package run

import (
	"path/filepath"

	"github.com/aigate-dev/aigate/internal/api"
)

// defaultApplications is the default deny_write entry for the directory
// whose .desktop files the desktop runs (policy's defaults): the XDG data
// home's applications/ where $XDG_DATA_HOME is unset.
const defaultApplications = "~/.local/share/applications/"

// xdgDataHome is $XDG_DATA_HOME of env (the command's environment),
// cleaned, when it is absolute; "" otherwise. The desktop, and Claude
// Code's deep-link registration (claudestate.Own.DataHome), read and
// write applications/ there in place of ~/.local/share/applications. A
// relative or empty value is not followed: the XDG base directory
// specification has it ignored (Claude Code 2.1.332 takes it relative to
// its working directory; its refusals there stay reported).
func xdgDataHome(env []string) string {
	v := envValue(env, "XDG_DATA_HOME")
	if !filepath.IsAbs(v) {
		return ""
	}
	return filepath.Clean(v)
}

// dataHomeRules are the deny_write rules of this run for the
// applications directory of the command's $XDG_DATA_HOME, where it is not
// ~/.local/share: the default entry protects ~/.local/share/applications
// only, and a .desktop file planted in the other is run by the desktop
// (whose environment has the same $XDG_DATA_HOME when the user's profile
// sets it) at the user's next click on that application or link type. It
// follows the default: a policy without defaultApplications in deny_write
// gets none.
func dataHomeRules(p *runPlan) ([]api.RunRule, []string) {
	data := xdgDataHome(p.env)
	home := p.id.home
	if data == "" || home == "" || data == filepath.Join(home, ".local", "share") {
		return nil, nil
	}
	if _, ok := p.compiled.Write.Match(filepath.Join(home, ".local", "share", "applications")); !ok {
		return nil, nil
	}
	return newRunRules(p.compiled, home, []api.RunRule{{
		Pattern: filepath.Join(data, "applications") + "/",
		By:      "your desktop runs its .desktop files ($XDG_DATA_HOME)",
	}})
}
