package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const (
	// DirName is the per-user directory under the home directory.
	DirName = ".aigate"
	// GlobalName is the global config file inside DirName.
	GlobalName = "config.yaml"
	// TrustName is the trust store inside DirName.
	TrustName = "trusted.yaml"
	// ProjectName is the per-project config file.
	ProjectName = ".aigate.yaml"
	// ConfigEnv overrides the global config path, like --config.
	ConfigEnv = "AIGATE_CONFIG"
)

// Paths says where aigate's files are for one invocation.
type Paths struct {
	User *User
	// Dir is ~/.aigate of the invoking user.
	Dir string
	// Global is the global config file: ~/.aigate/config.yaml unless
	// overridden by --config or AIGATE_CONFIG.
	Global string
	// Trust is the trust store. It stays in Dir when Global is overridden,
	// because trust is the user's decision, not a property of one config.
	Trust string
	// Project is the nearest .aigate.yaml, or "" when there is none.
	Project string
	// ProjectRoot is the directory holding Project, or the working directory
	// when there is no project file. Anchored patterns are relative to it.
	ProjectRoot string
	// WorkDir is the working directory the search started from.
	WorkDir string
}

// LocateOptions are the inputs of Locate.
type LocateOptions struct {
	// ConfigFile is the --config flag; "" falls back to AIGATE_CONFIG and
	// then to ~/.aigate/config.yaml.
	ConfigFile string
	Env        Env
}

// Locate finds the invoking user's files and the project file for the
// working directory. Missing files are not an error: Paths names where they
// would be.
func Locate(opts LocateOptions) (*Paths, error) {
	u, err := InvokingUser(opts.Env)
	if err != nil {
		return nil, err
	}
	wd, err := opts.Env.Getwd()
	if err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	// Resolve symlinks in the directory (not in the file name) so that the
	// same project reached through a symlinked path is the same trusted
	// file, while a .aigate.yaml that is itself a symlink to some other
	// trusted file is still a different, untrusted path. Under sudo, the
	// search is the user's: root must not find (and later read) a project
	// file in a directory the user cannot search.
	var project string
	if err := u.Do(func() error {
		if r, err := filepath.EvalSymlinks(wd); err == nil {
			wd = r
		}
		var err error
		project, err = FindProject(wd)
		return err
	}); err != nil {
		return nil, err
	}
	p := &Paths{
		User:    u,
		Dir:     filepath.Join(u.Home, DirName),
		WorkDir: wd,
	}
	p.Trust = filepath.Join(p.Dir, TrustName)
	p.Global = opts.ConfigFile
	if p.Global == "" {
		p.Global = opts.Env.Getenv(ConfigEnv)
	}
	if p.Global == "" {
		p.Global = filepath.Join(p.Dir, GlobalName)
	} else if p.Global, err = filepath.Abs(expandHome(p.Global, u.Home)); err != nil {
		return nil, fmt.Errorf("config path: %w", err)
	}
	p.Project = project
	p.ProjectRoot = wd
	if p.Project != "" {
		p.ProjectRoot = filepath.Dir(p.Project)
	}
	return p, nil
}

// FindProject returns the .aigate.yaml in dir or its nearest ancestor that
// has one, or "" when none has. dir must be absolute.
func FindProject(dir string) (string, error) {
	for {
		f := filepath.Join(dir, ProjectName)
		fi, err := os.Stat(f)
		switch {
		case err == nil && fi.Mode().IsRegular():
			return f, nil
		case err == nil:
			return "", fmt.Errorf("project config %s is not a regular file", f)
		case errors.Is(err, fs.ErrPermission):
			// A directory we may not search cannot hold a file this user
			// wrote; keep looking upwards.
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("look for project config: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", nil
		}
		dir = parent
	}
}

// ProjectFileFor is the project file that --project edits: the existing
// one, or a new one in the working directory.
func (p *Paths) ProjectFileFor() string {
	if p.Project != "" {
		return p.Project
	}
	return filepath.Join(p.WorkDir, ProjectName)
}

// Pretty shortens a path under the user's home to ~/..., for output.
func (p *Paths) Pretty(path string) string {
	if p == nil || p.User == nil || path == "" {
		return path
	}
	rel, err := filepath.Rel(p.User.Home, path)
	if err != nil || rel == ".." || filepath.IsAbs(rel) || len(rel) >= 3 && rel[:3] == "../" {
		return path
	}
	if rel == "." {
		return "~"
	}
	return "~/" + rel
}

func expandHome(path, home string) string {
	if path == "~" {
		return home
	}
	if len(path) >= 2 && path[:2] == "~/" {
		return filepath.Join(home, path[2:])
	}
	return path
}
