package config

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCheckProjectRoot: / and a directory holding the home are no
// project (`cd / && sudo aigate run` walked the machine and failed on
// /proc/PID/net); the home itself, a project in it, /tmp and a
// directory elsewhere are.
func TestCheckProjectRoot(t *testing.T) {
	home := "/home/u"
	for _, tc := range []struct {
		root, want string
	}{
		{"/", "the whole machine"},
		{"/home", "holds your home /home/u"},
		{"/home/", "holds your home /home/u"},
		{"/home/u", ""},
		{"/home/u/proj", ""},
		{"/home/u2", ""},
		{"/srv/proj", ""},
		{"", ""},
		{"proj", "not absolute"},
	} {
		err := CheckProjectRoot(tc.root, home)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v, want accepted", tc.root, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error saying %q", tc.root, err, tc.want)
		case err != nil && tc.want != "not absolute" && !strings.Contains(err.Error(), "cd into your project's directory"):
			t.Errorf("%q: %v does not say what to do", tc.root, err)
		}
	}
	if err := CheckProjectRoot(t.TempDir(), filepath.Join(t.TempDir(), "home")); err != nil {
		t.Errorf("a temporary directory: %v", err)
	}
}

// TestCheckProjectRootPseudoFS: /proc and /sys are refused by their file
// system, wherever they are mounted.
func TestCheckProjectRootPseudoFS(t *testing.T) {
	if runtime.GOOS != "linux" {
		return // pseudoFS is Linux's only
	}
	for dir, fs := range map[string]string{"/proc": "proc", "/proc/self/net": "proc", "/sys": "sysfs", "/sys/kernel": "sysfs"} {
		err := CheckProjectRoot(dir, "/home/u")
		if err == nil || !strings.Contains(err.Error(), "kernel's "+fs+" file system") {
			t.Errorf("%s: %v, want refused as %s", dir, err, fs)
		}
	}
}
