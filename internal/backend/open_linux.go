package backend

import (
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/fanotify"
	"github.com/aigate-dev/aigate/internal/loader"
)

func init() {
	Default = Opener{
		ProbeLSM: loader.ProbeLSM,
		OpenLSM: func(o Options) (enforce.Backend, error) {
			return loader.OpenLSM(loader.LSMOptions{})
		},
		OpenFanotify: func(o Options) (enforce.Backend, error) {
			return fanotify.Open(fanotify.Options{
				Logger:      o.Logger,
				Home:        o.Home,
				ProjectRoot: o.ProjectRoot,
			})
		},
	}
}
