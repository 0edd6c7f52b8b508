//go:build !linux

package cli

import (
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
)

// defaultTrustDir: nothing keeps records off Linux.
const defaultTrustDir = ""

// askAgentPolicy: there is no agent off Linux; nothing keeps a record.
func askAgentPolicy(*cmdutil.Factory, *config.Paths, string, policyAsk) (*policyState, error) {
	return nil, nil
}
