//go:build linux

package lsm

import (
	"fmt"
	"strings"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/policy"
)

var _ enforce.Limited = (*Backend)(nil)

// Unenforced names what this kernel leaves of sb's deny_exec rules
// (enforce.Limited): copies of the binaries under another name where the
// copy programs could not be attached (Linux before 6.0), or copies
// refused by size alone where the kernel has no IMA to hash them.
func (b *Backend) Unenforced(sb *enforce.Sandbox) []string {
	ok, why := loader.ExecCopies()
	if !b.obj.RefusesCopies() && ok {
		why = "the copy programs are not attached: a copy of a deny_exec binary under another name runs"
	}
	return unenforcedCopies(sb.Policy, why)
}

// UnenforcedExec is Unenforced for a policy not yet running, from what
// this kernel offers (status, before any sandbox exists).
func UnenforcedExec(c *policy.Compiled) []string {
	_, why := loader.ExecCopies()
	return unenforcedCopies(c, why)
}

func unenforcedCopies(c *policy.Compiled, why string) []string {
	if c == nil || why == "" {
		return nil
	}
	var names []string
	for _, e := range append(c.Exec.Names[:len(c.Exec.Names):len(c.Exec.Names)], c.Exec.Paths...) {
		names = append(names, e.Value)
	}
	if len(names) == 0 {
		return nil
	}
	if len(names) > 4 {
		names = append(names[:4:4], "...")
	}
	return []string{fmt.Sprintf("deny_exec %s on the lsm backend: %s", strings.Join(names, ", "), why)}
}
