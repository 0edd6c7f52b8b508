//go:build linux

package cmdutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

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
func askAgentTrust(f *Factory, paths *config.Paths, socket string) (agentTrust, *config.TrustStore, error) {
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
