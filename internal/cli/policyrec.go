package cli

import (
	"time"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
)

// The aigate agent keeps the global policy each user last accepted and
// refuses a sandbox whose ~/.aigate/config.yaml allows more, unless the
// change was accepted from outside every sandbox (internal/agent,
// policyrec.go). The commands that edit the file accept their own change;
// `aigate policy accept` accepts a hand edit.

// policyState is the agent's answer about the global file.
type policyState struct {
	recorded bool      // a record existed before
	accepted time.Time // of the record
	loosened []string  // what the file loosens compared with it
}

// policyFile is the global file's content; nil data: it does not exist.
type policyFile struct {
	path string
	data []byte
}

// acceptEdit tells the agent that this command changed the global file
// from before to after (nil data: no file), so that the next run is not
// refused for it. The agent accepts only when before loosened nothing
// unaccepted: a command that edits one rule must not accept what someone
// else changed first. Nothing happens without an agent that keeps
// records. A refusal is a warning: the file is written; the next run
// will say what to do.
func acceptEdit(f *cmdutil.Factory, paths *config.Paths, before, after policyFile, edit bool) {
	req := policyAsk{action: "accept", global: after, edit: edit, base: before}
	if _, err := askAgentPolicy(f, paths, "", req); err != nil {
		f.Warnf("%s was written, but the aigate agent did not accept it as your policy: %v", paths.Pretty(after.path), err)
	}
}

// policyAsk is one policy request.
type policyAsk struct {
	action string // "check" or "accept"
	global policyFile
	edit   bool
	base   policyFile
	// dir holds the records when no agent answers and this is root
	// (those of embedded runs); "" takes Factory.TrustDir.
	dir string
}
