//go:build linux

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aigate-dev/aigate/internal/agent"
	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
)

// defaultTrustDir is Factory.TrustDir: the service agent's
// directory, so that both modes decide from the same records.
const defaultTrustDir = agent.DefaultTrustDir

// policyTimeout bounds one policy exchange with the agent.
const policyTimeout = 10 * time.Second

// askAgentPolicy sends r to the agent on socket. It returns (nil, nil)
// when no agent answers, the caller may not use it, or it keeps no policy
// records (an embedded agent; one from before the records).
func askAgentPolicy(f *cmdutil.Factory, paths *config.Paths, socket string, r policyAsk) (*policyState, error) {
	if socket == "" {
		socket = api.SocketPath()
	}
	file := func(p policyFile) *api.File {
		if p.data == nil {
			return nil
		}
		return &api.File{Path: p.path, Data: p.data}
	}
	req := api.PolicyRequest{Action: r.action, Global: file(r.global), Home: paths.User.Home, Edit: r.edit}
	if r.edit {
		req.Base = file(r.base)
	}
	if f.Env.Euid == 0 && paths.User.UID != 0 {
		// sudo: the records are those of the user who ran it.
		owner := uint32(paths.User.UID)
		req.Owner = &owner
	}
	ctx, cancel := context.WithTimeout(context.Background(), policyTimeout)
	defer cancel()
	st, err := api.NewClient(socket).Policy(ctx, req)
	var ae *api.Error
	switch {
	case errors.Is(err, api.ErrNoAgent) && f.Env.Euid == 0 && (r.dir != "" || f.TrustDir != ""):
		dir := r.dir
		if dir == "" {
			dir = f.TrustDir
		}
		return answerPolicy(dir, req)
	case errors.Is(err, api.ErrNoAgent), errors.Is(err, os.ErrPermission):
		return nil, nil
	case errors.As(err, &ae) && ae.Code == api.CodeBadRequest && ae.Message == fmt.Sprintf("unknown op %q", api.OpPolicy):
		return nil, nil // an agent from before policy records
	case err != nil:
		return nil, err
	case !st.Held:
		return nil, nil
	}
	return &policyState{recorded: st.Recorded, accepted: st.Accepted, loosened: st.Loosened}, nil
}

// answerPolicy answers req from the records in dir, as the agent would, when no agent runs and this is root: the
// policy an embedded `sudo aigate run` compares with is kept there, and
// only root may change it. Accepting is refused inside a sandbox, as the
// agent refuses it (a killed run's pinned sandbox has no agent to ask).
func answerPolicy(dir string, req api.PolicyRequest) (*policyState, error) {
	if req.Action == api.PolicyAccept {
		if err := cmdutil.CheckOutside("accept the policy"); err != nil {
			return nil, err
		}
	}
	owner := uint32(0)
	if req.Owner != nil {
		owner = *req.Owner
	}
	resp := agent.AnswerPolicy(dir, owner, &req)
	if resp.Error != nil {
		return nil, resp.Error
	}
	st := resp.Policy
	return &policyState{recorded: st.Recorded, accepted: st.Accepted, loosened: st.Loosened}, nil
}
