package cmdutil

import (
	"time"

	"github.com/aigate-dev/aigate/internal/config"
)

// TrustRecords are the user's trust decisions: kept by the agent, in
// root-owned storage no sandbox can write, when an agent that keeps them
// answers (`aigate setup` installed it); else ~/.aigate/trusted.yaml, as
// without an agent (an embedded `sudo aigate run`, or no setup).
type TrustRecords struct {
	ts    *config.TrustStore
	paths *config.Paths
	agent agentTrust // nil: the local store decides
}

// agentTrust changes the records the agent keeps.
type agentTrust interface {
	set(path, sum string) (*config.TrustStore, error)
	revoke(path string) (*config.TrustStore, error)
	where() string
}

// OpenTrust reads the user's trust records: from the agent on socket when
// it keeps them, else from the local store.
func OpenTrust(f *Factory, paths *config.Paths, socket string) (*TrustRecords, error) {
	r := &TrustRecords{paths: paths}
	ag, ts, err := askAgentTrust(f, paths, socket)
	if err != nil {
		return nil, err
	}
	if ag != nil {
		r.ts, r.agent = ts, ag
		return r, nil
	}
	if r.ts, err = readTrust(paths); err != nil {
		return nil, err
	}
	return r, nil
}

// Held says whether the agent keeps the records.
func (r *TrustRecords) Held() bool { return r.agent != nil }

// State says whether data, as the content of path, is trusted.
func (r *TrustRecords) State(path string, data []byte) config.TrustState {
	return r.ts.State(path, data)
}

// Where names the records for messages.
func (r *TrustRecords) Where() string {
	if r.agent != nil {
		return r.agent.where()
	}
	return r.paths.Pretty(r.paths.Trust)
}

// Set trusts data as the content of path.
func (r *TrustRecords) Set(path string, data []byte, now time.Time) error {
	if r.agent != nil {
		ts, err := r.agent.set(path, config.Hash(data))
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
	if r.agent != nil {
		ts, err := r.agent.revoke(path)
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
// ~/.aigate/trusted.yaml by the agent's records, when the agent keeps them:
// a sandbox may have forged the local store. (The agent decides from its
// records anyway; this keeps what run applies and says here the same.) A
// project trusted only in the local store is not imported: that could be
// the forgery. The user is told to trust it again.
func AgentTrustState(f *Factory, loaded *config.Loaded, socket string) error {
	if loaded.Project == nil {
		return nil
	}
	recs, err := OpenTrust(f, loaded.Paths, socket)
	if err != nil || !recs.Held() {
		return err
	}
	local := loaded.Trust
	loaded.Trust = recs.State(loaded.Paths.Project, loaded.ProjectData)
	if local == config.Trusted && loaded.Trust != config.Trusted {
		f.Warnf("%s is trusted in %s, but the aigate agent now keeps trust records (where no sandbox can write) and it is not trusted there; "+
			"its loosening entries are ignored until you review it and run `aigate trust` again, outside any sandbox",
			loaded.Paths.Pretty(loaded.Paths.Project), loaded.Paths.Pretty(loaded.Paths.Trust))
	}
	return nil
}

// readTrust reads the trust store with the user's file-system identity.
func readTrust(paths *config.Paths) (*config.TrustStore, error) {
	return config.AsUser(paths.User, func() (*config.TrustStore, error) { return config.ReadTrustStore(paths.Trust) })
}
