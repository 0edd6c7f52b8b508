package cli

import (
	"fmt"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/policy"
)

// projectTemplate is the .aigate.yaml that `init --project` writes, and the
// start of one that `deny --project` creates.
const projectTemplate = `# aigate project config: rules for AI agents started with "aigate run" in
# this project, on top of your global ~/.aigate/config.yaml.
#
# Deny rules here always apply. Entries that loosen the policy (allow_read,
# allow_write, allow_exec, allow_net, net: allow, ...) apply only after you
# review this file and run "aigate trust"; any change to it un-trusts it.
# A pattern without a slash (.env, *.pem) matches that name anywhere; one
# with a slash (config/prod.yaml) is relative to this directory.

# Files the agent may not open.
deny_read: []

# Files the agent may read but not modify.
deny_write: []

# Domains, IPs or CIDRs to allow with net: deny (needs "aigate trust").
# allow_net:
#   - registry.example.com
`

// edit is one change to one config file, from opening it to writing it.
type edit struct {
	f     *cmdutil.Factory
	paths *config.Paths
	doc   *config.Doc
	// project is true when editing the project file.
	project bool
	dryRun  bool
	// trustedBefore: the project file was trusted before this edit. The
	// user's own edit of a file they trusted stays trusted (the hash is
	// updated); an untrusted file stays untrusted, so running a command
	// never approves entries someone else wrote. A file aigate creates for
	// the user is theirs and trusted.
	trustedBefore bool
	// current is the parse of the file before the edit (nil when new).
	current *policy.Config
}

// beginEdit opens the global file, or the project file with project.
func beginEdit(f *cmdutil.Factory, project, dryRun bool) (*edit, error) {
	paths, err := f.Paths()
	if err != nil {
		return nil, err
	}
	e := &edit{f: f, paths: paths, project: project, dryRun: dryRun}
	target, initial := paths.Global, policy.DefaultYAML()
	if project {
		target, initial = paths.ProjectFileFor(), []byte(projectTemplate)
	}
	if e.doc, err = config.AsUser(paths.User, func() (*config.Doc, error) { return config.OpenDoc(target, initial) }); err != nil {
		return nil, err
	}
	if e.doc.Exists {
		// Refuse to edit a file that is already broken: the user should see
		// and fix their own error, not a confusing one from our edit.
		if e.current, err = policy.Parse(target, e.doc.Orig); err != nil {
			return nil, fmt.Errorf("%w\nfix %s first; nothing was changed", err, paths.Pretty(target))
		}
	}
	if project && e.doc.Exists {
		recs, err := cmdutil.OpenTrust(f, paths, "")
		if err != nil {
			return nil, err
		}
		e.trustedBefore = recs.State(target, e.doc.Orig) == config.Trusted
	}
	return e, nil
}

// name is the edited file, shortened for output.
func (e *edit) name() string { return e.paths.Pretty(e.doc.Path) }

// commit validates and writes the edited file, or shows the diff with
// --dry-run. It returns the parse of the new content.
func (e *edit) commit() (*policy.Config, error) {
	f := e.f
	if !e.doc.Changed() {
		f.Printf("%s is unchanged\n", e.name())
		return e.current, nil
	}
	data := e.doc.Data()
	// Our edit must leave a file that parses; if it does not, that is a bug
	// here, and the user's file must not pay for it.
	cfg, err := policy.Parse(e.doc.Path, data)
	if err != nil {
		return nil, fmt.Errorf("refusing to write %s: the edited file would not be valid (%w); the file is unchanged, please report this", e.name(), err)
	}
	if e.dryRun {
		var old []byte
		if e.doc.Exists {
			old = e.doc.Orig
		}
		f.Printf("%s", config.Diff(e.doc.Path, old, data))
		f.Printf("dry run: %s not written\n", e.name())
		return cfg, nil
	}
	if !e.project {
		if err := config.EnsureDir(e.paths.Dir, e.paths.User); err != nil {
			return nil, err
		}
	}
	if err := config.WriteFileAtomic(e.doc.Path, data, 0o644, e.paths.User); err != nil {
		return nil, err
	}
	if !e.project {
		// The user's own change: the agent's record of the accepted
		// policy follows it (what the file held before must have been
		// accepted already).
		before := policyFile{path: e.doc.Path}
		if e.doc.Exists {
			before.data = e.doc.Orig
		}
		acceptEdit(f, e.paths, before, policyFile{path: e.doc.Path, data: data}, true)
	}
	switch {
	case !e.doc.Exists && e.project:
		f.Printf("created %s\n", e.name())
	case !e.doc.Exists:
		f.Printf("created %s from the defaults (see `aigate status`)\n", e.name())
	}
	if e.project && (e.trustedBefore || !e.doc.Exists) {
		if err := e.retrust(data); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// retrust records the user's own edit as trusted.
func (e *edit) retrust(data []byte) error {
	recs, err := cmdutil.OpenTrust(e.f, e.paths, "")
	if err != nil {
		return err
	}
	if err := recs.Set(e.doc.Path, data, e.f.Now()); err != nil {
		return fmt.Errorf("%s was written but could not be re-trusted: %w; run `aigate trust`", e.name(), err)
	}
	return nil
}

// needsTrust says whether loosening entries just written to the project
// file wait for `aigate trust`.
func (e *edit) needsTrust() bool {
	return e.project && e.doc.Exists && !e.trustedBefore
}
