//go:build !linux

package cli

import "github.com/aigate-dev/aigate/internal/doctor"

// doctorAgent: the agent and its API are Linux's.
func doctorAgent() *doctor.Agent { return nil }
