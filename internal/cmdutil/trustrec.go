package cmdutil

import (
	"time"

	"github.com/aigate-dev/aigate/internal/config"
)

// TrustRecords are the user's trust decisions. Where they are kept says
// who may change them:
//
//   - an agent that keeps them answers (the service agent of `aigate
//     setup`, or the agent an embedded `sudo aigate run` started): in
//     root-owned storage no sandbox can write, changed through the agent,
//     which refuses a peer inside any sandbox;
//   - no agent answers and a records directory is set (Linux: root's
//     /var/lib/aigate/trust, Factory.TrustDir): the same records, read
//     here, changed only by root outside every sandbox (`sudo aigate
//     trust`); an embedded run decides from them;
//   - neither (macOS, or `--trust-dir ""`): ~/.aigate/trusted.yaml, the
//     user's own file.
type TrustRecords struct {
	ts     *config.TrustStore
	paths  *config.Paths
	keeper trustKeeper // nil: ~/.aigate/trusted.yaml decides
	direct bool        // keeper is root's directory, read without an agent
}

// trustKeeper changes the records root keeps (through the agent, or in
// root's directory).
type trustKeeper interface {
	// check says why this process may not change the records, if so.
	check() error
	set(path, sum string) (*config.TrustStore, error)
	revoke(path string) (*config.TrustStore, error)
	where() string
}

// OpenTrust reads the user's trust records: from the agent on socket when
// it keeps them, else from root's directory f.TrustDir, else from the
// local store.
func OpenTrust(f *Factory, paths *config.Paths, socket string) (*TrustRecords, error) {
	return OpenTrustIn(f, paths, socket, f.TrustDir)
}

// OpenTrustIn is OpenTrust with root's records in dir ("" for none: then
// ~/.aigate/trusted.yaml decides when no agent keeps records).
func OpenTrustIn(f *Factory, paths *config.Paths, socket, dir string) (*TrustRecords, error) {
	r := &TrustRecords{paths: paths}
	keeper, ts, err := askAgentTrust(f, paths, socket)
	if err != nil {
		return nil, err
	}
	if keeper == nil && dir != "" {
		if keeper, ts, err = rootTrust(f, paths, dir); err != nil {
			return nil, err
		}
		r.direct = keeper != nil
	}
	if keeper != nil {
		r.ts, r.keeper = ts, keeper
		return r, nil
	}
	if r.ts, err = readTrust(paths); err != nil {
		return nil, err
	}
	return r, nil
}

// Held says whether root keeps the records (an agent, or root's
// directory), not ~/.aigate/trusted.yaml.
func (r *TrustRecords) Held() bool { return r.keeper != nil }

// Direct says whether the records are root's directory, read because no
// agent answers: those an embedded `sudo aigate run` decides from.
func (r *TrustRecords) Direct() bool { return r.direct }

// CheckChange says why this process may not change the records (root's
// directory without an agent, and not root), so that a command can say so
// before it asks anyone anything.
func (r *TrustRecords) CheckChange() error {
	if r.keeper != nil {
		return r.keeper.check()
	}
	return nil
}

// State says whether data, as the content of path, is trusted.
func (r *TrustRecords) State(path string, data []byte) config.TrustState {
	return r.ts.State(path, data)
}

// Where names the records for messages.
func (r *TrustRecords) Where() string {
	if r.keeper != nil {
		return r.keeper.where()
	}
	return r.paths.Pretty(r.paths.Trust)
}

// Set trusts data as the content of path.
func (r *TrustRecords) Set(path string, data []byte, now time.Time) error {
	if r.keeper != nil {
		ts, err := r.keeper.set(path, config.Hash(data))
		if err != nil {
			return err
		}
		r.ts = ts
		return nil
	}
	r.ts.Set(path, data, now)
	return r.ts.Write(r.paths.Trust, r.paths.User)
}

// Remove forgets path; it reports whether there was an entry.
func (r *TrustRecords) Remove(path string) (bool, error) {
	if r.ts.State(path, nil) == config.Untrusted {
		return false, nil
	}
	if r.keeper != nil {
		ts, err := r.keeper.revoke(path)
		if err != nil {
			return false, err
		}
		r.ts = ts
		return true, nil
	}
	r.ts.Remove(path)
	return true, r.ts.Write(r.paths.Trust, r.paths.User)
}

// AgentTrustState replaces the project file's trust that Load read from
// ~/.aigate/trusted.yaml by root's records (the agent's, or root's
// directory when no agent answers), when root keeps them: a sandbox may
// have forged the local store. (The agent decides from its records
// anyway; this keeps what run applies and says here the same.)
func AgentTrustState(f *Factory, loaded *config.Loaded, socket string) error {
	if loaded.Project == nil {
		return nil
	}
	recs, err := OpenTrust(f, loaded.Paths, socket)
	if err != nil {
		return err
	}
	ApplyTrust(f, loaded, recs)
	return nil
}

// ApplyTrust sets loaded's project trust from recs when root keeps them.
// A project trusted only in the local store is not imported: that could
// be the forgery. The user is told to trust it again.
func ApplyTrust(f *Factory, loaded *config.Loaded, recs *TrustRecords) {
	if loaded.Project == nil || !recs.Held() {
		return
	}
	local := loaded.Trust
	loaded.Trust = recs.State(loaded.Paths.Project, loaded.ProjectData)
	if local != config.Trusted || loaded.Trust == config.Trusted {
		return
	}
	name, store := loaded.Paths.Pretty(loaded.Paths.Project), loaded.Paths.Pretty(loaded.Paths.Trust)
	if recs.Direct() {
		f.Warnf("%s is trusted in %s, but `sudo aigate run` now takes project trust from %s (where no sandbox can write) and it is not trusted there; "+
			"its loosening entries are ignored until you review it and run `sudo aigate trust`, outside any sandbox",
			name, store, recs.Where())
		return
	}
	f.Warnf("%s is trusted in %s, but the aigate agent now keeps trust records (where no sandbox can write) and it is not trusted there; "+
		"its loosening entries are ignored until you review it and run `aigate trust` again, outside any sandbox",
		name, store)
}

// readTrust reads the trust store with the user's file-system identity.
func readTrust(paths *config.Paths) (*config.TrustStore, error) {
	return config.AsUser(paths.User, func() (*config.TrustStore, error) { return config.ReadTrustStore(paths.Trust) })
}
