package darwin

import (
	"fmt"
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
	// A read deny refuses the content, not the existence: without
	// readattr and readsecurity in the list, stat, ls -l, ripgrep and git
	// still see that the file is there (as on Linux), they only cannot
	// open it.
	denyReadFile = "read,readextattr"
	// Denying list and search on a directory makes everything beneath it
	// unreachable by path, existing or created later.
	denyReadDir    = "list,search,readextattr"
	denyWriteFile  = "write,append,writeattr,writeextattr,writesecurity,chown,delete"
	denyWriteDir   = "add_file,add_subdirectory,writeattr,writeextattr,writesecurity,chown,delete,delete_child"
	denyExecFile   = "execute"
	denyRename     = "delete"
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

// ACE is one ACL entry, the same text on every path in Paths. Paths are
// never symbolic links: every list here comes from a walk that looks at
// entries with lstat and skips links, and the commands use chmod -h, which
// changes a link itself (acl_set_link_np) if a path became one since. So an
// entry never lands on whatever a link points to.
type ACE struct {
	Text  string
	Paths []string
	Rule  policy.RuleID
}

// MaxBatchBytes bounds the paths of one chmod command. macOS's ARG_MAX is
// 1 MiB for arguments and environment together; a quarter of it leaves room
// for any environment and still puts thousands of paths in one process.
const MaxBatchBytes = 256 << 10

// AddCommands are the chmod lines that add the entry to every path, as few
// processes as MaxBatchBytes allows.
func (a ACE) AddCommands() []Command { return a.commands("+a") }

// RemoveCommands remove exactly that entry: chmod -a subtracts the listed
// permissions from the matching entry and drops the entry once it is
// empty, so the same text removes it whole.
func (a ACE) RemoveCommands() []Command { return a.commands("-a") }

func (a ACE) commands(op string) []Command {
	var cs []Command
	for _, b := range batches(a.Paths, MaxBatchBytes) {
		cs = append(cs, cmd("chmod", append([]string{"-h", op, a.Text}, b...)...))
	}
	return cs
}

// batches splits paths into runs whose total length stays under limit (a
// single longer path still gets its own batch).
func batches(paths []string, limit int) [][]string {
	var out [][]string
	var cur []string
	n := 0
	for _, p := range paths {
		if len(cur) > 0 && n+len(p)+1 > limit {
			out = append(out, cur)
			cur, n = nil, 0
		}
		cur = append(cur, p)
		n += len(p) + 1
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// sealedPrefixes cannot carry an ACL entry: the signed, read-only system
// volume (macOS 11+), the cryptexes that macOS 13+ mounts read-only and puts
// in PATH (Safari's and the system's: /System/Cryptexes/App/usr/bin, and the
// codex.system bootstrap paths under /var/run/com.apple.security.cryptexd),
// and /Library/Apple, which System Integrity Protection keeps even root from
// changing. Rules matching them are reported instead of failing the run.
var sealedPrefixes = []string{
	"/System", "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/share",
	"/Library/Apple",
	"/var/run/com.apple.security.cryptexd", "/private/var/run/com.apple.security.cryptexd",
}

// OnSealedVolume reports whether p is on the read-only system volume, in a
// cryptex, or otherwise protected from ACL changes by the system.
func OnSealedVolume(p string) bool {
	for _, pre := range sealedPrefixes {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

// DenyText returns the deny entry's text for a path of that type and
// access, and false for an access that has none.
func DenyText(user string, a policy.Access, dir bool) (string, bool) {
	who := "user:" + user + " deny "
	switch {
	case a == policy.AccessRead && dir:
		return who + denyReadDir, true
	case a == policy.AccessRead:
		return who + denyReadFile, true
	case a == policy.AccessWrite && dir:
		// Files created later inherit it; files already inside get
		// their own entry from the walk (TreeEntries).
		return who + denyWriteDir + "," + inheritFlags, true
	case a == policy.AccessWrite:
		return who + denyWriteFile, true
	case a == policy.AccessExec && dir:
		return who + denyExecFile + "," + inheritFlags, true
	case a == policy.AccessExec:
		return who + denyExecFile, true
	}
	return "", false
}

// RenameDenyText protects a directory that holds a write-denied path from
// being renamed away: with `delete` on .git, the sandbox user could move
// .git aside and put a .git with hooks of its own in its place. An explicit
// deny of delete on the directory beats the delete_child the project grant
// gives on its parent.
func RenameDenyText(user string) string { return "user:" + user + " deny " + denyRename }

// ShareText is the project grant for the sandbox user, inherited by what
// it creates.
func ShareText(user string) string {
	return "user:" + user + " allow " + allowProject + "," + inheritFlags
}

// OwnerText is the inheritable grant for the person who ran aigate, put on
// the project's directories: files and directories the sandbox user creates
// there belong to the sandbox user, and inherit this entry, so the person
// can still edit, delete and add to them (git adding objects to a
// .git/objects/xx directory the tool created, say).
func OwnerText(owner string) string {
	return "user:" + owner + " allow " + allowProject + "," + inheritFlags
}

// TraversalText lets the sandbox user pass through a directory between the
// home and the project, without listing it.
func TraversalText(user string) string { return "user:" + user + " allow " + allowTraversal }

// ancestorsBelow returns the directories strictly between top and p, from
// top down; nil when p is not below top.
func ancestorsBelow(top, p string) []string {
	if !strings.HasPrefix(p, top+"/") {
		return nil
	}
	var anc []string
	for d := path.Dir(p); d != top && d != "/" && d != "."; d = path.Dir(d) {
		anc = append(anc, d)
	}
	for i, j := 0, len(anc)-1; i < j; i, j = i+1, j-1 {
		anc[i], anc[j] = anc[j], anc[i]
	}
	return anc
}

// TraversalPaths are the directories that get "allow search" so the
// sandbox user can reach a project inside the home: the home itself and
// each directory between it and the project. Nothing outside the home is
// touched.
func TraversalPaths(projectRoot, home string) []string {
	if home == "" || !strings.HasPrefix(projectRoot, home+"/") {
		return nil
	}
	return append([]string{home}, ancestorsBelow(home, projectRoot)...)
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

// describePaths names a path list in a step's description: the path itself,
// or the first one and how many there are.
func describePaths(ps []string) string {
	switch len(ps) {
	case 0:
		return "(none)"
	case 1:
		return ps[0]
	}
	return fmt.Sprintf("%d paths (%s, ...)", len(ps), ps[0])
}
