//go:build linux

package fanotify

import (
	"fmt"
	"strings"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/resolve"
)

var _ enforce.Limited = (*Backend)(nil)

// Unenforced names the deny_exec rules this backend leaves alone in sb's
// policy (enforce.Limited).
func (b *Backend) Unenforced(sb *enforce.Sandbox) []string {
	b.mu.RLock()
	s := b.sandboxes[sb.ID]
	b.mu.RUnlock()
	if s != nil && s.Sandbox == sb {
		return s.plan.unenforced // decided when Add listed the exec directories
	}
	dirs := b.opts.ExecDirs
	if sb.ExecDirs != nil {
		dirs = sb.ExecDirs
	}
	return UnenforcedExec(sb.Policy, dirs)
}

// UnenforcedExec names the deny_exec names that resolve, in dirs, to a
// multi-call binary also installed under names no rule denies (busybox's
// nc and sh): fanotify sees the file, not the name it was started as, and
// denying the file would deny the shell, so those names are not enforced.
func UnenforcedExec(c *policy.Compiled, dirs []string) []string {
	if c == nil {
		return nil
	}
	_, shared := resolve.ExecutablesShared(c.Exec, dirs)
	return unenforcedLines(shared)
}

func unenforcedLines(shared []resolve.Shared) []string {
	var out []string
	for _, s := range shared {
		allowed := s.Allowed
		if len(allowed) > 3 {
			allowed = append(allowed[:3:3], "...")
		}
		out = append(out, fmt.Sprintf("deny_exec %s is not enforced by the fanotify backend: %s is a multi-call binary that also runs %s (the lsm backend denies it by name)",
			strings.Join(s.Denied, ", "), s.File.Path, strings.Join(allowed, ", ")))
	}
	return out
}

// UnenforcedCopies says, for a policy with deny_exec rules, where a copy
// of a denied binary under another name still runs on this backend: the
// filesystem exec marks (execfs.go) report every exec on the filesystems
// the kernel lets them mark (one mounted later a few milliseconds after
// it appears), but the dynamic loader opens a copy without an exec, seen
// only where opens are reported (loaderCopy). status shows it beside the
// rules; run does not repeat it on every start.
func UnenforcedCopies(c *policy.Compiled) []string {
	if c == nil || len(c.Exec.Names)+len(c.Exec.Paths) == 0 {
		return nil
	}
	return []string{"deny_exec on the fanotify backend: a copy of a denied binary under another name is refused on every filesystem; " +
		"it runs on one the kernel refused to mark (the agent's log names it), in the milliseconds between a mount and its mark, and through the dynamic loader (ld.so ./x) outside the project and home trees " +
		"(the lsm backend refuses copies anywhere)"}
}
