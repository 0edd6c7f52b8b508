package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/aigate-dev/aigate/internal/policy"
)

// Loaded is the configuration that applies to one invocation.
type Loaded struct {
	Paths *Paths
	// Global is the parsed global file, or nil when it does not exist and
	// the built-in defaults apply.
	Global *policy.Config
	// Project is the parsed project file, or nil when there is none.
	Project *policy.Config
	// GlobalData is the exact content of the global file (nil when it does
	// not exist), so that no one reads it again with other privileges.
	GlobalData []byte
	// ProjectData is the exact content of the project file, as hashed for
	// trust.
	ProjectData []byte
	Trust       TrustState
}

// Load reads and parses the global and project files of p and decides
// whether the project file is trusted. Under sudo the files are read with
// the user's file-system identity (see User.Do): a config path that is a
// symlink to /etc/shadow must not be read by root on the user's behalf.
func Load(p *Paths) (*Loaded, error) {
	var l *Loaded
	err := p.User.Do(func() error {
		var err error
		l, err = load(p)
		return err
	})
	return l, err
}

func load(p *Paths) (*Loaded, error) {
	l := &Loaded{Paths: p}
	data, err := readIfExists(p.Global)
	if err != nil {
		return nil, err
	}
	l.GlobalData = data
	if data != nil {
		if l.Global, err = policy.Parse(p.Global, data); err != nil {
			return nil, err
		}
	}
	if p.Project == "" {
		return l, nil
	}
	if l.ProjectData, err = readIfExists(p.Project); err != nil {
		return nil, err
	}
	if l.ProjectData == nil {
		// Removed since Locate looked; behave as if there was none.
		return l, nil
	}
	if l.Project, err = policy.Parse(p.Project, l.ProjectData); err != nil {
		return nil, err
	}
	ts, err := ReadTrustStore(p.Trust)
	if err != nil {
		return nil, err
	}
	l.Trust = ts.State(p.Project, l.ProjectData)
	return l, nil
}

// Policy merges the layers. The project's loosening entries apply only when
// the project file is trusted; the warnings say what was ignored.
func (l *Loaded) Policy() (*policy.Policy, []policy.Warning) {
	pol, warns := policy.Merge(l.Global, l.Project, l.Trust == Trusted)
	if l.Trust == Changed {
		warns = append([]policy.Warning{{
			Source: policy.Source{File: l.Paths.Project},
			Msg:    "changed since it was trusted; its loosening entries are ignored until you review it and run `aigate trust`",
		}}, warns...)
	}
	return pol, warns
}

// PolicyEnv is what policy.Compile needs to know about this invocation.
func (l *Loaded) PolicyEnv() policy.Env {
	return policy.Env{Home: l.Paths.User.Home, ProjectRoot: l.Paths.ProjectRoot}
}

func readIfExists(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if data == nil {
			data = []byte{}
		}
		return data, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	}
	return nil, fmt.Errorf("read config: %w", err)
}
