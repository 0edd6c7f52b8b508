//go:build !linux

package cmdutil

import "github.com/aigate-dev/aigate/internal/config"

// askAgentTrust: there is no agent off Linux; the local store decides.
func askAgentTrust(*Factory, *config.Paths, string) (trustKeeper, *config.TrustStore, error) {
	return nil, nil, nil
}

// rootTrust: nothing keeps root's records off Linux.
func rootTrust(*Factory, *config.Paths, string) (trustKeeper, *config.TrustStore, error) {
	return nil, nil, nil
}
