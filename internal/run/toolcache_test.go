//go:build linux

package run

import (
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

func mergedPolicy(t *testing.T, global string) *policy.Policy {
	t.Helper()
	c, err := policy.Parse("~/.aigate/config.yaml", []byte(global))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := policy.Merge(c, nil, false)
	return p
}

// go, npm, pip, cargo, gradle and maven are steered to the sandboxes' own caches; a location
// the user set is kept and reported, never silently overridden; a tool in
// shared_caches is left alone.
func TestCacheEnv(t *testing.T) {
	const home = "/home/u"
	for _, tc := range []struct {
		name   string
		home   string // else /home/u
		global string
		env    []string
		files  map[string]string
		want   []string // NAME=value the command gets
		absent []string // names the command must not get from aigate
		warns  []string // each a substring of one warning
	}{
		{name: "defaults", env: []string{"PATH=/bin"},
			want: []string{"GOCACHE=/home/u/.cache/aigate/go-build", "GOMODCACHE=/home/u/.cache/aigate/go-mod",
				"GOPROXY=file:///home/u/go/pkg/mod/cache/download,https://proxy.golang.org,direct",
				"npm_config_cache=/home/u/.cache/aigate/npm", "PIP_CACHE_DIR=/home/u/.cache/aigate/pip",
				"CARGO_HOME=/home/u/.cache/aigate/cargo",
				"GRADLE_USER_HOME=/home/u/.cache/aigate/gradle", "GRADLE_RO_DEP_CACHE=/home/u/.gradle/caches",
				"MAVEN_OPTS=-Dmaven.repo.local=/home/u/.cache/aigate/maven -Dmaven.repo.local.tail=/home/u/.m2/repository",
				"XDG_CACHE_HOME=/home/u/.cache/aigate/xdg"}},
		{name: "user's XDG_CACHE_HOME kept", env: []string{"XDG_CACHE_HOME=/home/u/.cache"},
			absent: []string{"XDG_CACHE_HOME"}, warns: []string{"XDG_CACHE_HOME is set to /home/u/.cache (in the environment, XDG_CACHE_HOME)", "read-only inside"}},
		{name: "writable ~/.cache keeps the user's XDG cache", global: "writable: [~/.cache]\n",
			want: []string{"GOCACHE=/home/u/.cache/aigate/go-build"}, absent: []string{"XDG_CACHE_HOME"}},
		{name: "user's MAVEN_OPTS kept in front", env: []string{"MAVEN_OPTS=-Xmx2g"},
			want: []string{"MAVEN_OPTS=-Xmx2g -Dmaven.repo.local=/home/u/.cache/aigate/maven -Dmaven.repo.local.tail=/home/u/.m2/repository"}},
		{name: "explicit CARGO_HOME kept", env: []string{"CARGO_HOME=/opt/cargo"},
			absent: []string{"CARGO_HOME"}, warns: []string{"CARGO_HOME is set to /opt/cargo (in the environment, CARGO_HOME)"}},
		{name: "gradle home in GRADLE_OPTS kept", env: []string{"GRADLE_OPTS=-Xmx1g -Dgradle.user.home=/g"},
			absent: []string{"GRADLE_USER_HOME", "GRADLE_RO_DEP_CACHE"}, warns: []string{"GRADLE_USER_HOME is set to /g (in the environment, GRADLE_OPTS)"}},
		{name: "user's read-only gradle cache kept", env: []string{"GRADLE_RO_DEP_CACHE=/ro"},
			want: []string{"GRADLE_USER_HOME=/home/u/.cache/aigate/gradle"}, absent: []string{"GRADLE_RO_DEP_CACHE"}},
		{name: "maven repository in MAVEN_ARGS kept", env: []string{"MAVEN_ARGS=-B -Dmaven.repo.local=/m2"},
			absent: []string{"MAVEN_OPTS"}, warns: []string{"-Dmaven.repo.local is set to /m2 (in the environment, MAVEN_ARGS)"}},
		{name: "maven repository in the project's .mvn kept", files: map[string]string{"/p/.mvn/maven.config": "-B\n-Dmaven.repo.local=.repo\n"},
			absent: []string{"MAVEN_OPTS"}, warns: []string{"-Dmaven.repo.local is set to .repo (in /p/.mvn/maven.config:2)"}},
		{name: "a home with a blank gets no MAVEN_OPTS", home: "/home/u v",
			want: []string{"CARGO_HOME=/home/u v/.cache/aigate/cargo"}, absent: []string{"MAVEN_OPTS"},
			warns: []string{`your home "/home/u v" has a blank`}},
		{name: "the sandbox's own maven repository is no warning", env: []string{"MAVEN_OPTS=-Dmaven.repo.local=/home/u/.cache/aigate/maven"},
			absent: []string{"MAVEN_OPTS"}},
		{name: "user's GOPROXY and GOPATH kept behind the module cache",
			env:   []string{"GOPROXY=https://corp.example/go,off"},
			files: map[string]string{"/home/u/.config/go/env": "GOPATH=/src/gopath\n"},
			want:  []string{"GOPROXY=file:///src/gopath/pkg/mod/cache/download,https://corp.example/go,off"}},
		{name: "explicit GOCACHE kept", env: []string{"GOCACHE=/var/cache/go"},
			want:   []string{"GOMODCACHE=/home/u/.cache/aigate/go-mod"},
			absent: []string{"GOCACHE"},
			warns:  []string{"GOCACHE is set to /var/cache/go (in the environment, GOCACHE)", "shared_caches"}},
		{name: "go env -w GOMODCACHE kept", env: []string{"XDG_CONFIG_HOME=/cfg"},
			files:  map[string]string{"/cfg/go/env": "# x\nGOMODCACHE=/mods\n"},
			want:   []string{"GOCACHE=/home/u/.cache/aigate/go-build"},
			absent: []string{"GOMODCACHE", "GOPROXY"},
			warns:  []string{"GOMODCACHE is set to /mods (in /cfg/go/env:2)"}},
		{name: "GOENV=off ignores the file", env: []string{"GOENV=off"},
			files: map[string]string{"/home/u/.config/go/env": "GOCACHE=/x\n"},
			want:  []string{"GOCACHE=/home/u/.cache/aigate/go-build"}},
		{name: "the sandbox's own value is no warning", env: []string{"GOCACHE=/home/u/.cache/aigate/go-build"},
			want: []string{"GOCACHE=/home/u/.cache/aigate/go-build"}},
		{name: "npmrc cache kept", files: map[string]string{"/p/.npmrc": "; c\ncache = /npmcache\n"},
			absent: []string{"npm_config_cache"}, warns: []string{"npm_config_cache is set to /npmcache (in /p/.npmrc:2)"}},
		{name: "npm env in upper case kept", env: []string{"NPM_CONFIG_CACHE=/n"},
			absent: []string{"npm_config_cache"}, warns: []string{"(in the environment, NPM_CONFIG_CACHE)"}},
		{name: "pip.conf cache-dir kept", files: map[string]string{"/home/u/.config/pip/pip.conf": "[global]\ncache-dir = /pc\n"},
			absent: []string{"PIP_CACHE_DIR"}, warns: []string{"PIP_CACHE_DIR is set to /pc (in /home/u/.config/pip/pip.conf:2)"}},
		{name: "shared", global: "shared_caches: [go, npm, pip, cargo, gradle, maven]\n", env: []string{"GOCACHE=/x"},
			absent: []string{"GOMODCACHE", "GOPROXY", "npm_config_cache", "CARGO_HOME", "GRADLE_USER_HOME", "GRADLE_RO_DEP_CACHE", "MAVEN_OPTS", "GOCACHE"},
			// go's and pip's defaults follow XDG_CACHE_HOME: shared, they are the user's
			want: []string{"PIP_CACHE_DIR=/home/u/.cache/pip", "XDG_CACHE_HOME=/home/u/.cache/aigate/xdg"}},
		{name: "shared go's default build cache is the user's", global: "shared_caches: [go]\n",
			want: []string{"GOCACHE=/home/u/.cache/go-build"}, absent: []string{"GOMODCACHE", "GOPROXY"}},
		{name: "shared pip with a pip.conf cache-dir", global: "shared_caches: [pip]\n",
			files:  map[string]string{"/home/u/.config/pip/pip.conf": "[global]\ncache-dir = /pc\n"},
			absent: []string{"PIP_CACHE_DIR"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := func(path string) ([]byte, error) {
				if s, ok := tc.files[path]; ok {
					return []byte(s), nil
				}
				return nil, fs.ErrNotExist
			}
			h := home
			if tc.home != "" {
				h = tc.home
			}
			got, warns := cacheEnv(mergedPolicy(t, tc.global), slices.Clone(tc.env), h, "/p", read)
			added := got[len(tc.env):]
			for _, w := range tc.want {
				if !slices.Contains(added, w) {
					t.Errorf("env lacks %s: %v", w, added)
				}
			}
			for _, name := range tc.absent {
				if slices.ContainsFunc(added, func(kv string) bool { return strings.HasPrefix(kv, name+"=") }) {
					t.Errorf("env sets %s: %v", name, added)
				}
			}
			for _, w := range tc.warns {
				if !slices.ContainsFunc(warns, func(s string) bool { return strings.Contains(s, w) }) {
					t.Errorf("warnings lack %q: %q", w, warns)
				}
			}
			if len(tc.warns) == 0 && len(warns) > 0 {
				t.Errorf("warnings: %q", warns)
			}
			if !slices.Equal(got[:len(tc.env)], tc.env) {
				t.Errorf("the environment changed: %v", got)
			}
		})
	}
}
