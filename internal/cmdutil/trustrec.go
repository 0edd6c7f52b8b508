package cli

import (
	"time"

	"github.com/aigate-dev/aigate/internal/config"
)

// trustRecords are the user's trust decisions: kept by the agent, in
// root-owned storage no sandbox can write, when an agent that keeps them
// answers (`aigate setup` installed it); else ~/.aigate/trusted.yaml, as
// without an agent (an embedded `sudo aigate run`, or no setup).
type trustRecords struct {
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

// openTrust reads the user's trust records: from the agent on socket when
// it keeps them, else from the local store.
func openTrust(f *Factory, paths *config.Paths, socket string) (*trustRecords, error) {
	r := &trustRecords{paths: paths}
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

// held says whether the agent keeps the records.
func (r *trustRecords) held() bool { return r.agent != nil }

func (r *trustRecords) State(path string, data []byte) config.TrustState {
	return r.ts.State(path, data)
}

// where names the records for messages.
func (r *trustRecords) where() string {
	if r.agent != nil {
		return r.agent.where()
	}
	return r.paths.Pretty(r.paths.Trust)
}

// Set trusts data as the content of path.
func (r *trustRecords) Set(path string, data []byte, now time.Time) error {
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
func (r *trustRecords) Remove(path string) (bool, error) {
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

// agentTrustState replaces the project file's trust that Load read from
// ~/.aigate/trusted.yaml by the agent's records, when the agent keeps them:
// a sandbox may have forged the local store. (The agent decides from its
// records anyway; this keeps what run applies and says here the same.) A
// project trusted only in the local store is not imported: that could be
// the forgery. The user is told to trust it again.
func agentTrustState(f *Factory, loaded *config.Loaded, socket string) error {
	if loaded.Project == nil {
		return nil
	}
	recs, err := openTrust(f, loaded.Paths, socket)
	if err != nil || !recs.held() {
		return err
	}
	local := loaded.Trust
	loaded.Trust = recs.State(loaded.Paths.Project, loaded.ProjectData)
	if local == config.Trusted && loaded.Trust != config.Trusted {
		f.warnf("%s is trusted in %s, but the aigate agent now keeps trust records (where no sandbox can write) and it is not trusted there; "+
			"its loosening entries are ignored until you review it and run `aigate trust` again, outside any sandbox",
			loaded.Paths.Pretty(loaded.Paths.Project), loaded.Paths.Pretty(loaded.Paths.Trust))
	}
	return nil
}
