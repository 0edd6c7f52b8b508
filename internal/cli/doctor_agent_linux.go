package cli

import (
	"context"
	"errors"
	"os"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/doctor"
)

// doctorAgent asks the agent on the default socket what it enforces with;
// nil when none runs.
func doctorAgent() *doctor.Agent {
	ctx, cancel := context.WithTimeout(context.Background(), agentTimeout)
	defer cancel()
	c := api.NewClient(api.SocketPath())
	st, err := c.Status(ctx)
	switch {
	case err == nil:
		return &doctor.Agent{Socket: c.Socket, PID: st.PID, Backend: st.Backend, Landlock: st.Landlock}
	case errors.Is(err, os.ErrPermission):
		return &doctor.Agent{Socket: c.Socket, Denied: true}
	}
	return nil
}
