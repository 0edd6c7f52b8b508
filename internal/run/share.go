package run

import (
	"fmt"
	"path/filepath"
	"strings"
)

// shareable refuses project roots whose sharing would hand macOS's sandbox
// user far more than a project: every run grants it the whole root
// (chmod -R +a), so / or the home (or a parent of it) would share every
// file not explicitly denied.
func shareable(root, home string) error {
	root = filepath.Clean(root)
	if root == "/" || root == filepath.Clean(home) || strings.HasPrefix(filepath.Clean(home)+"/", root+"/") {
		return fmt.Errorf("the project directory is %s: aigate on macOS shares the project with the sandbox user, and this would share all of it; cd into a project (or create its .aigate.yaml with aigate init) and run again", root)
	}
	return nil
}
