package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// CheckProjectRoot refuses a project directory that is no project: the
// root of the file system, a directory holding the home (/home: every
// user's home), or one on a kernel pseudo file system (/proc, /sys). The
// agent walks the project as root and marks what it finds, and the
// sandbox may write all of it: either would take in the whole machine,
// or fail half-way on files that cannot be marked. The home itself is a
// project (Landlock keeps it read-only but for the usual tool state;
// docs/run.md). The error says what to do.
func CheckProjectRoot(root, home string) error {
	if root == "" {
		return nil
	}
	root = filepath.Clean(root)
	if !filepath.IsAbs(root) {
		return fmt.Errorf("the project directory %s is not absolute", root)
	}
	const todo = "cd into your project's directory (or create its .aigate.yaml there with aigate init) and run again"
	if root == "/" {
		return fmt.Errorf("the project directory is /, the whole machine: %s", todo)
	}
	if home != "" && home != "/" && Within(home, root) && root != filepath.Clean(home) {
		return fmt.Errorf("the project directory is %s, which holds your home %s (and perhaps other users'): %s", root, home, todo)
	}
	if fs := pseudoFS(root); fs != "" {
		return fmt.Errorf("the project directory %s is on the kernel's %s file system, not a project: %s", root, fs, todo)
	}
	return nil
}

// Within reports whether path is dir or beneath it, by their clean forms.
func Within(path, dir string) bool {
	path, dir = filepath.Clean(path), filepath.Clean(dir)
	return path == dir || dir == "/" || strings.HasPrefix(path, dir+"/")
}
