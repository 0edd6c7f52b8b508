package gitdirs

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// harmless are the config keys ("section.key", any subsection) git writes
// itself when it makes a repository, a clone or a submodule, and a
// commit's identity: none runs a program. Anything else in the config of
// a git directory the sandbox made is worth the user's look.
var harmless = map[string]bool{
	"core.repositoryformatversion": true, "core.filemode": true, "core.bare": true,
	"core.logallrefupdates": true, "core.worktree": true, "core.ignorecase": true,
	"core.precomposeunicode": true, "core.symlinks": true,
	"remote.url": true, "remote.fetch": true, "branch.remote": true, "branch.merge": true,
	"submodule.url": true, "submodule.active": true,
	"extensions.objectformat": true, "extensions.worktreeconfig": true,
	"user.name": true, "user.email": true,
}

// Risky lists what in git directory g can make git outside run a
// program: the settings of its config and config.worktree other than
// those git writes itself ("core.fsmonitor"), a commondir ("commondir":
// git reads another directory's config and hooks) and its hooks not named
// *.sample ("hooks/post-checkout"), a config or hooks that is not a plain
// file or directory (a link), and a config line it cannot read as git
// would. For a git directory the sandbox made, which no rule could
// protect (docs/threat-model.md, "Git directories"); Defuse takes out
// what it lists.
func Risky(g string) []string {
	var out []string
	for _, f := range []string{"config", "config.worktree"} {
		p := filepath.Join(g, f)
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
			continue
		case !fi.Mode().IsRegular():
			out = append(out, f+" (not a file: "+fi.Mode().Type().String()+")")
			continue
		case fi.Size() > maxSmall:
			out = append(out, f+" (larger than aigate reads)")
			continue
		}
		for _, c := range splitConfig(readSmall(p)) {
			if riskyKey(c) {
				out = append(out, c.riskyName())
			}
		}
	}
	if _, err := os.Lstat(filepath.Join(g, "commondir")); err == nil {
		out = append(out, "commondir")
	}
	if fi, err := os.Lstat(filepath.Join(g, "hooks")); err == nil && !fi.IsDir() {
		out = append(out, "hooks (not a directory)")
	}
	ents, _ := os.ReadDir(filepath.Join(g, "hooks"))
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".sample") {
			out = append(out, "hooks/"+e.Name())
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
