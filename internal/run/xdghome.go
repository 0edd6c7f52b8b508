//go:build linux

package run

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/landlock"
)

// xdgDataHome is $XDG_DATA_HOME of env (the command's environment),
// cleaned, when it is absolute; "" otherwise. Claude Code's deep-link
// registration (claudestate.Own.DataHome) writes applications/ there in
// place of ~/.local/share/applications. A relative or empty value is
// not followed: the XDG base directory specification has it ignored
// (Claude Code 2.1.332 takes it relative to its working directory; its
// refusals there stay reported).
func xdgDataHome(env []string) string {
	return absClean(envValue(env, "XDG_DATA_HOME"))
}

// absClean is v cleaned when it is absolute, "" for a relative or empty
// one, which the XDG specification and the programs' variables ignore.
func absClean(v string) string {
	if !filepath.IsAbs(v) {
		return ""
	}
	return filepath.Clean(v)
}

// xdgWritable is the tool state of landlock.DefaultWritable beneath
// ~/.config and ~/.local/state where the user's $XDG_CONFIG_HOME and
// $XDG_STATE_HOME (getenv: aigate run's environment, absolute values
// only) move it: go keeps its telemetry in $XDG_CONFIG_HOME/go/telemetry
// and writes there in every compile, so without this a go build inside
// reported dozens of refusals, and tools lost their state. A directory
// that is or holds the home, a config or data home, or ~/.local/bin is
// not followed: all of it would become writable. create are those of
// them to make when missing, as landlock.DefaultCreate makes the default.
func xdgWritable(home string, getenv func(string) string) (writable, create []string) {
	if !filepath.IsAbs(home) {
		return nil, nil
	}
	cfg, state := absClean(getenv("XDG_CONFIG_HOME")), absClean(getenv("XDG_STATE_HOME"))
	keep := []string{home, filepath.Join(home, ".config"), filepath.Join(home, ".local", "share"),
		filepath.Join(home, ".local", "bin"), cfg, absClean(getenv("XDG_DATA_HOME"))}
	holds := func(d string) bool {
		for _, k := range keep {
			if k != "" && config.Within(k, d) {
				return true
			}
		}
		return false
	}
	for _, w := range landlock.DefaultWritable {
		var base, to string
		switch {
		case strings.HasPrefix(w, ".config/"):
			base, to = ".config", cfg
		case w == filepath.Join(".local", "state") || strings.HasPrefix(w, ".local/state/"):
			base, to = filepath.Join(".local", "state"), state
		}
		if to == "" || to == filepath.Join(home, base) {
			continue
		}
		d := filepath.Join(to, strings.TrimPrefix(strings.TrimPrefix(w, base), "/"))
		if holds(d) {
			continue
		}
		writable = append(writable, d)
		if slices.Contains(landlock.DefaultCreate, w) {
			create = append(create, d)
		}
	}
	return writable, create
}

// goTelemetryDir is the directory where go keeps its telemetry
// ($XDG_CONFIG_HOME or ~/.config, then go/telemetry), for the sandbox to
// make before the home turns read-only, when go is on the PATH of getenv
// and it is missing: a go that never ran outside makes it at its first
// command, and inside it could not (one refusal per compile). "" when
// there is nothing to make.
func goTelemetryDir(home string, getenv func(string) string) string {
	if !filepath.IsAbs(home) {
		return ""
	}
	if _, err := lookPath("go", []string{"PATH=" + getenv("PATH")}); err != nil {
		return ""
	}
	cfg := absClean(getenv("XDG_CONFIG_HOME"))
	if cfg == "" {
		cfg = filepath.Join(home, ".config")
	}
	d := filepath.Join(cfg, "go", "telemetry")
	if _, err := os.Stat(d); err == nil {
		return ""
	}
	return d
}
