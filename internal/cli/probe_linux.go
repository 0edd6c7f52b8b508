//go:build linux

package cli

import "github.com/aigate-dev/aigate/internal/loader"

func init() { lsmProbe = loader.ProbeLSM }
