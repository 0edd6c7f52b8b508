//go:build linux

package run

import (
	"bufio"
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/aigate-dev/aigate/internal/policy"
)

// cacheSetting is where a tool's setting was found: the environment, or
// a file and line.
type cacheSetting struct {
	value, where string
}

// cacheEnv steers go, npm and pip in the command to caches of the
// sandboxes' own (policy.CacheTools; the policy makes the user's
// deny_write) by setting their variables in env. A location the user set
// (a variable in aigate's environment, `go env -w`, an .npmrc's cache=, a
// pip.conf's cache-dir) is kept, not silently overridden: each comes back
// as a warning saying that the sandbox writes it and how to choose.
// readFile reads a file as the user (config files the user's tools read).
func cacheEnv(pol *policy.Policy, env []string, home, projectRoot string, readFile func(string) ([]byte, error)) (out, warnings []string) {
	out = env
	c := &cacheSteer{env: env, home: home, readFile: readFile}
	if pol.SandboxCaches("go") {
		c.goEnv()
	}
	if pol.SandboxCaches("npm") {
		c.npmEnv(projectRoot)
	}
	if pol.SandboxCaches("pip") {
		c.pipEnv()
	}
	return append(out, c.set...), c.warnings
}

type cacheSteer struct {
	env      []string
	home     string
	readFile func(string) ([]byte, error)
	set      []string // NAME=value to add
	warnings []string
}

// getenv is the value of name in the command's environment.
func (c *cacheSteer) getenv(name string, fold bool) (string, string, bool) {
	for i := len(c.env) - 1; i >= 0; i-- {
		k, v, _ := strings.Cut(c.env[i], "=")
		if k == name || (fold && strings.EqualFold(k, name)) {
			return k, v, true
		}
	}
	return "", "", false
}

func (c *cacheSteer) own(name string) string {
	return filepath.Join(c.home, policy.SandboxCacheDir, name)
}

// steer sets name to the sandbox's own value unless the user set it
// (explicit, not empty): then it warns and keeps it.
func (c *cacheSteer) steer(tool, name, own string, explicit cacheSetting) bool {
	if explicit.value != "" && filepath.Clean(explicit.value) != own {
		c.warnings = append(c.warnings, fmt.Sprintf(
			"%s is set to %s (%s), so %s inside the sandbox uses that cache, not one of its own: if %s outside reads it too, what the sandbox puts there runs outside it; "+
				"unset it for aigate run, or add %s to shared_caches: in ~/.aigate/config.yaml to share %s's caches knowingly (docs/threat-model.md, \"Build caches\")",
			name, explicit.value, explicit.where, tool, tool, tool, tool))
		return false
	}
	c.set = append(c.set, name+"="+own)
	return true
}

// fromEnv is name's setting in the environment.
func (c *cacheSteer) fromEnv(name string, fold bool) cacheSetting {
	if k, v, ok := c.getenv(name, fold); ok && v != "" {
		return cacheSetting{v, "in the environment, " + k}
	}
	return cacheSetting{}
}

// goEnv: GOCACHE and GOMODCACHE of the sandboxes' own; modules come
// first from the user's module cache as a read-only proxy (file://, the
// download cache is laid out as one; go verifies each against go.sum and
// the checksum database as it would from the network), then from the
// proxy the user has.
func (c *cacheSteer) goEnv() {
	file := c.goEnvFile()
	get := func(name string) cacheSetting {
		if s := c.fromEnv(name, false); s.value != "" {
			return s
		}
		return file[name]
	}
	c.steer("go", "GOCACHE", c.own("go-build"), get("GOCACHE"))
	if !c.steer("go", "GOMODCACHE", c.own("go-mod"), get("GOMODCACHE")) {
		return
	}
	userMod := filepath.Join(c.home, "go", "pkg", "mod")
	if gopath := get("GOPATH").value; gopath != "" {
		userMod = filepath.Join(filepath.SplitList(gopath)[0], "pkg", "mod")
	}
	proxy := get("GOPROXY").value
	if proxy == "" {
		proxy = "https://proxy.golang.org,direct"
	}
	c.set = append(c.set, "GOPROXY=file://"+filepath.Join(userMod, "cache", "download")+","+proxy)
}

// goEnvFile reads go's own settings file (`go env -w`): a variable there
// counts as set by the user, as go itself reads it under the environment.
func (c *cacheSteer) goEnvFile() map[string]cacheSetting {
	path := ""
	if _, v, ok := c.getenv("GOENV", false); ok {
		if v == "off" {
			return nil
		}
		path = v
	} else if _, v, ok := c.getenv("XDG_CONFIG_HOME", false); ok && filepath.IsAbs(v) {
		path = filepath.Join(v, "go", "env")
	} else {
		path = filepath.Join(c.home, ".config", "go", "env")
	}
	out := map[string]cacheSetting{}
	c.eachLine(path, func(line string, n int) {
		if k, v, ok := strings.Cut(line, "="); ok && v != "" {
			out[strings.TrimSpace(k)] = cacheSetting{strings.TrimSpace(v), fmt.Sprintf("in %s:%d", path, n)}
		}
	})
	return out
}

// npmEnv: npm_config_cache of the sandboxes' own (npx's packages live in
// the cache's _npx). The variable outranks every .npmrc, so a cache= in
// the user's or the project's is reported rather than overridden.
func (c *cacheSteer) npmEnv(projectRoot string) {
	explicit := c.fromEnv("npm_config_cache", true)
	files := []string{filepath.Join(c.home, ".npmrc")}
	if _, v, ok := c.getenv("npm_config_userconfig", true); ok && v != "" {
		files[0] = v
	}
	if projectRoot != "" {
		files = append(files, filepath.Join(projectRoot, ".npmrc"))
	}
	for _, f := range files {
		if explicit.value == "" {
			explicit = c.iniKey(f, "cache")
		}
	}
	c.steer("npm", "npm_config_cache", c.own("npm"), explicit)
}

// pipEnv: PIP_CACHE_DIR of the sandboxes' own; a cache-dir in a pip
// configuration file is reported.
func (c *cacheSteer) pipEnv() {
	explicit := c.fromEnv("PIP_CACHE_DIR", false)
	config := filepath.Join(c.home, ".config")
	if _, v, ok := c.getenv("XDG_CONFIG_HOME", false); ok && filepath.IsAbs(v) {
		config = v
	}
	files := []string{"/etc/pip.conf", "/etc/xdg/pip/pip.conf", filepath.Join(c.home, ".pip", "pip.conf"), filepath.Join(config, "pip", "pip.conf")}
	if _, v, ok := c.getenv("PIP_CONFIG_FILE", false); ok && v != "" && v != "/dev/null" {
		files = append(files, v)
	}
	for _, f := range files {
		if explicit.value == "" {
			explicit = c.iniKey(f, "cache-dir", "cache_dir")
		}
	}
	c.steer("pip", "PIP_CACHE_DIR", c.own("pip"), explicit)
}

// iniKey finds "key = value" in an ini-style file (.npmrc, pip.conf),
// comments skipped; "" when absent or unreadable.
func (c *cacheSteer) iniKey(path string, keys ...string) cacheSetting {
	var s cacheSetting
	c.eachLine(path, func(line string, n int) {
		k, v, ok := strings.Cut(line, "=")
		if !ok || s.value != "" {
			return
		}
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"'`)
		for _, want := range keys {
			if k == want && v != "" {
				s = cacheSetting{v, fmt.Sprintf("in %s:%d", path, n)}
			}
		}
	})
	return s
}

// eachLine calls fn with each line of path that is not a comment.
func (c *cacheSteer) eachLine(path string, fn func(line string, n int)) {
	data, err := c.readFile(path)
	if err != nil {
		return // absent or unreadable: the tool cannot read it either
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		fn(line, n)
	}
}
