package darwin

import (
	"path"
	"sort"
	"strings"

	"github.com/aigate-dev/aigate/internal/policy"
)

// Permission lists for ACL entries, in the names chmod(1) accepts. File and
// directory names of the same bit differ (read/list, write/add_file,
// execute/search, append/add_subdirectory), so each target gets the names
// of its own type.
const (
	denyReadFile = "read,readattr,readextattr,readsecurity"
	// Denying list and search on a directory makes everything beneath it
	// unreachable by path, existing or created later.
	denyReadDir    = "list,search,readattr,readextattr,readsecurity"
	denyWriteFile  = "write,append,writeattr,writeextattr,writesecurity,chown,delete"
	denyWriteDir   = "add_file,add_subdirectory,writeattr,writeextattr,writesecurity,chown,delete,delete_child"
	denyExecFile   = "execute"
	inheritFlags   = "file_inherit,directory_inherit"
	allowProject   = "read,write,append,execute,list,search,add_file,add_subdirectory,delete,delete_child,readattr,writeattr,readextattr,writeextattr,readsecurity"
	allowTraversal = "search"
)

// Target is one concrete path that gets an ACL entry.
type Target struct {
	Path   string        `json:"path"`
	Dir    bool          `json:"dir"`
	Access policy.Access `json:"access"`
	Rule   policy.RuleID `json:"rule"`
}

// ACE is one ACL entry for the sandbox user on one path.
type ACE struct {
	Path string
	// Text is the entry as chmod(1) takes it, e.g.
	// "user:_aigate deny read,readattr,readextattr,readsecurity".
	Text string
	// Recursive applies the entry to everything already beneath a
	// directory (chmod -R); inheritance flags only reach new children.
	Recursive bool
	Rule      policy.RuleID
}

// AddCommand is the chmod line that adds the entry.
func (a ACE) AddCommand() Command {
	if a.Recursive {
		return cmd("chmod", "-R", "+a", a.Text, a.Path)
	}
	return cmd("chmod", "+a", a.Text, a.Path)
}

// RemoveCommand is the chmod line that removes exactly that entry: chmod -a
// subtracts the listed permissions from the matching entry and drops the
// entry once it is empty, so the same text removes it whole.
func (a ACE) RemoveCommand() Command {
	if a.Recursive {
		return cmd("chmod", "-R", "-a", a.Text, a.Path)
	}
	return cmd("chmod", "-a", a.Text, a.Path)
}

// sealedPrefixes live on the signed, read-only system volume (macOS 11+):
// not even root can add an ACL there, so rules matching them are reported
// instead of failing the run.
var sealedPrefixes = []string{"/System", "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/share"}

// OnSealedVolume reports whether p is on the read-only system volume.
func OnSealedVolume(p string) bool {
	for _, pre := range sealedPrefixes {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

// DenyACE returns the deny entry for t, and false when t cannot carry one.
func DenyACE(user string, t Target) (ACE, bool) {
	if OnSealedVolume(t.Path) {
		return ACE{}, false
	}
	who := "user:" + user + " deny "
	a := ACE{Path: t.Path, Rule: t.Rule}
	switch {
	case t.Access == policy.AccessRead && t.Dir:
		a.Text = who + denyReadDir
	case t.Access == policy.AccessRead:
		a.Text = who + denyReadFile
	case t.Access == policy.AccessWrite && t.Dir:
		// Files already inside need their own entry (-R); files created
		// later inherit it.
		a.Text = who + denyWriteDir + "," + inheritFlags
		a.Recursive = true
	case t.Access == policy.AccessWrite:
		a.Text = who + denyWriteFile
	case t.Access == policy.AccessExec && t.Dir:
		a.Text = who + denyExecFile + "," + inheritFlags
		a.Recursive = true
	case t.Access == policy.AccessExec:
		a.Text = who + denyExecFile
	default:
		return ACE{}, false
	}
	return a, true
}

// ProjectACEs grants the sandbox user the project directory: full access to
// everything already in it (-R) and, through inheritance, to what is created
// later; plus "search" on each ancestor below home, because macOS homes and
// some project parents are not searchable by other users.
func ProjectACEs(user, projectRoot, home string) []ACE {
	aces := []ACE{{
		Path:      projectRoot,
		Text:      "user:" + user + " allow " + allowProject + "," + inheritFlags,
		Recursive: true,
	}}
	if home == "" || !strings.HasPrefix(projectRoot, home+"/") {
		return aces
	}
	var anc []string
	for d := path.Dir(projectRoot); ; d = path.Dir(d) {
		anc = append(anc, d)
		if d == home || d == "/" {
			break
		}
	}
	for i := len(anc) - 1; i >= 0; i-- {
		aces = append(aces, ACE{Path: anc[i], Text: "user:" + user + " allow " + allowTraversal})
	}
	return aces
}

// SortTargets orders targets by path, then access, so plans are stable.
func SortTargets(ts []Target) {
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].Path != ts[j].Path {
			return ts[i].Path < ts[j].Path
		}
		return ts[i].Access < ts[j].Access
	})
}
