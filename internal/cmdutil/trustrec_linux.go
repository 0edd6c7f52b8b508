//go:build linux

package cmdutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aigate-dev/aigate/internal/agent"
	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/config"
)

// trustTimeout bounds one trust exchange with the agent.
const trustTimeout = 10 * time.Second

type agentTrustClient struct {
	c     *api.Client
	owner *uint32
}

// askAgentTrust returns the agent's records when an agent answers on
// socket and keeps them; (nil, nil, nil) when none answers, the caller may
// not use it, or it keeps none: the local store decides then.
func askAgentTrust(f *Factory, paths *config.Paths, socket string) (trustKeeper, *config.TrustStore, error) {
	if socket == "" {
		socket = api.SocketPath()
	}
	ag := &agentTrustClient{c: api.NewClient(socket)}
	if f.Env.Euid == 0 && paths.User != nil && paths.User.UID != 0 {
		// sudo: the records are those of the user who ran it.
		owner := uint32(paths.User.UID)
		ag.owner = &owner
	}
	ts, held, err := ag.do(api.TrustRequest{Action: api.TrustGet})
	var ae *api.Error
	switch {
	case errors.Is(err, api.ErrNoAgent), errors.Is(err, os.ErrPermission):
		return nil, nil, nil
	case errors.As(err, &ae) && ae.Code == api.CodeBadRequest:
		// An agent from before trust records: it keeps none.
		return nil, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("read your trust records from the aigate agent: %w", err)
	case !held:
		return nil, nil, nil
	}
	return ag, ts, nil
}

func (a *agentTrustClient) do(t api.TrustRequest) (*config.TrustStore, bool, error) {
	t.Owner = a.owner
	ctx, cancel := context.WithTimeout(context.Background(), trustTimeout)
	defer cancel()
	recs, err := a.c.Trust(ctx, t)
	if err != nil {
		return nil, false, err
	}
	ts := &config.TrustStore{}
	for _, e := range recs.Entries {
		ts.Entries = append(ts.Entries, config.TrustEntry{Path: e.Path, SHA256: e.SHA256, Trusted: e.Trusted})
	}
	return ts, recs.Held, nil
}

func (a *agentTrustClient) check() error { return nil } // the agent decides

func (a *agentTrustClient) set(path, sum string) (*config.TrustStore, error) {
	ts, _, err := a.do(api.TrustRequest{Action: api.TrustSet, Path: path, SHA256: sum})
	if err != nil {
		return nil, fmt.Errorf("record the trust with the aigate agent: %w", err)
	}
	return ts, nil
}

func (a *agentTrustClient) revoke(path string) (*config.TrustStore, error) {
	ts, _, err := a.do(api.TrustRequest{Action: api.TrustRevoke, Path: path})
	if err != nil {
		return nil, fmt.Errorf("revoke the trust with the aigate agent: %w", err)
	}
	return ts, nil
}

func (a *agentTrustClient) where() string { return "the aigate agent's trust records" }

// dirTrust is root's records in a directory, read and changed here
// because no agent answers (agent.AnswerTrust): the records an embedded
// `sudo aigate run` decides from. Anyone may read them (root's 0644
// files); only root outside every sandbox may change them.
type dirTrust struct {
	dir   string
	owner uint32
	root  bool
}

// rootTrust reads the records of the user paths names in dir (none yet:
// an empty store).
func rootTrust(f *Factory, paths *config.Paths, dir string) (trustKeeper, *config.TrustStore, error) {
	d := &dirTrust{dir: dir, owner: uint32(paths.User.UID), root: f.Env.Euid == 0}
	ts, err := d.do(api.TrustRequest{Action: api.TrustGet})
	if err != nil {
		return nil, nil, fmt.Errorf("read your trust records: %w", err)
	}
	return d, ts, nil
}

func (d *dirTrust) check() error {
	if !d.root {
		return fmt.Errorf("no aigate agent is running, and the project trust that `sudo aigate run` applies is root's (kept in %s, where no sandbox can write): "+
			"run the command with sudo (`sudo aigate trust`) in a terminal outside any sandbox, or run `sudo aigate setup` once so that the agent keeps your trust", d.dir)
	}
	return nil
}

func (d *dirTrust) do(t api.TrustRequest) (*config.TrustStore, error) {
	if t.Action != api.TrustGet {
		if err := d.check(); err != nil {
			return nil, err
		}
		// No agent is there to ask whether this process is inside a
		// sandbox: fail closed when its cgroup cannot be read.
		if err := CheckOutside("change the trust records"); err != nil {
			return nil, err
		}
	}
	resp := agent.AnswerTrust(d.dir, d.owner, &t)
	if resp.Error != nil {
		return nil, resp.Error
	}
	ts := &config.TrustStore{}
	for _, e := range resp.Trust.Entries {
		ts.Entries = append(ts.Entries, config.TrustEntry{Path: e.Path, SHA256: e.SHA256, Trusted: e.Trusted})
	}
	return ts, nil
}

func (d *dirTrust) set(path, sum string) (*config.TrustStore, error) {
	return d.do(api.TrustRequest{Action: api.TrustSet, Path: path, SHA256: sum})
}

func (d *dirTrust) revoke(path string) (*config.TrustStore, error) {
	return d.do(api.TrustRequest{Action: api.TrustRevoke, Path: path})
}

func (d *dirTrust) where() string { return "root's trust records in " + d.dir }
