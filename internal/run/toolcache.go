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

// cacheEnv steers go, npm, pip, cargo, gradle and maven in the command to caches of the
// sandboxes' own (policy.CacheTools; the policy makes the user's
// deny_write) by setting their variables in env. A location the user set
// (a variable in aigate's environment, `go env -w`, an .npmrc's cache=, a
// pip.conf's cache-dir) is kept, not silently overridden: each comes back
// as a warning saying that the sandbox writes it and how to choose.
// readFile reads a file as the user (config files the user's tools read).
func cacheEnv(pol *policy.Policy, env []string, home, projectRoot string, readFile func(string) ([]byte, error)) (out, warnings []string) {
	out = env
	c := &cacheSteer{env: env, home: home, readFile: readFile}
	xdg := c.xdgEnv(pol)
	if pol.SandboxCaches("go") {
		c.goEnv()
	} else if xdg && c.fromEnv("GOCACHE", false).value == "" && c.goEnvFile()["GOCACHE"].value == "" {
		// go's default follows XDG_CACHE_HOME: shared means the user's.
		c.set = append(c.set, "GOCACHE="+filepath.Join(home, ".cache", "go-build"))
	}
	if pol.SandboxCaches("npm") {
		c.npmEnv(projectRoot)
	}
	if pol.SandboxCaches("pip") {
		c.pipEnv()
	} else if xdg && c.pipSetting().value == "" {
		c.set = append(c.set, "PIP_CACHE_DIR="+filepath.Join(home, ".cache", "pip"))
	}
	if pol.SandboxCaches("cargo") {
		c.steer("cargo", "CARGO_HOME", c.own("cargo"), c.fromEnv("CARGO_HOME", false))
	}
	if pol.SandboxCaches("gradle") {
		c.gradleEnv()
	}
	if pol.SandboxCaches("maven") {
		c.mavenEnv(projectRoot)
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
	c.steer("pip", "PIP_CACHE_DIR", c.own("pip"), c.pipSetting())
}

// pipSetting is the user's PIP_CACHE_DIR or a pip.conf's cache-dir.
func (c *cacheSteer) pipSetting() cacheSetting {
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
	return explicit
}

// xdgEnv points XDG_CACHE_HOME at the sandboxes' own directory: the rest
// of ~/.cache is read-only inside (landlock.DefaultWritable), as tools
// outside run what it holds, and tools that follow the variable cache
// there instead of failing. Not where the policy's writable: lists
// ~/.cache (the user shares it); a value the user set is kept, with a
// warning. It reports whether it set the variable.
func (c *cacheSteer) xdgEnv(pol *policy.Policy) bool {
	if !pol.SandboxXDGCache() {
		return false
	}
	cache := filepath.Join(c.home, ".cache")
	own := filepath.Join(c.home, policy.XDGCacheDir)
	if s := c.fromEnv("XDG_CACHE_HOME", false); s.value != "" {
		if filepath.Clean(s.value) != own {
			c.warnings = append(c.warnings, fmt.Sprintf(
				"XDG_CACHE_HOME is set to %s (%s), so tools inside the sandbox cache there, not in %s: where tools outside read it too, what the sandbox puts there runs outside them, and beneath %s it is read-only inside; "+
					"unset it for aigate run (docs/threat-model.md, \"Build caches\")", s.value, s.where, own, cache))
		}
		return false
	}
	c.set = append(c.set, "XDG_CACHE_HOME="+own)
	return true
}

// gradleEnv: GRADLE_USER_HOME of the sandboxes' own, so that gradle
// neither writes the user's caches nor runs the user's init scripts
// (~/.gradle/init.d) or reads its gradle.properties (credentials, JVM
// arguments) inside; dependencies the user's gradle downloaded are read
// from the user's cache as gradle's read-only dependency cache
// (GRADLE_RO_DEP_CACHE), which gradle never writes.
func (c *cacheSteer) gradleEnv() {
	explicit := c.fromEnv("GRADLE_USER_HOME", false)
	if explicit.value == "" {
		explicit = c.fromOpts("gradle.user.home", "GRADLE_OPTS", "JAVA_OPTS")
	}
	if !c.steer("gradle", "GRADLE_USER_HOME", c.own("gradle"), explicit) {
		return
	}
	if _, _, ok := c.getenv("GRADLE_RO_DEP_CACHE", false); !ok {
		c.set = append(c.set, "GRADLE_RO_DEP_CACHE="+filepath.Join(c.home, ".gradle", "caches"))
	}
}

// mavenEnv: a local repository of the sandboxes' own through MAVEN_OPTS
// (a system property, which outranks settings.xml's localRepository), the
// user's ~/.m2/repository behind it as a read-only "tail" (Maven 3.9 and
// later; older ones ignore the property). A location set in MAVEN_OPTS,
// MAVEN_ARGS or the project's .mvn/ files is kept and reported.
func (c *cacheSteer) mavenEnv(projectRoot string) {
	const prop = "maven.repo.local"
	explicit := c.fromOpts(prop, "MAVEN_OPTS", "MAVEN_ARGS")
	if explicit.value == "" && projectRoot != "" {
		for _, f := range []string{"maven.config", "jvm.config"} {
			path := filepath.Join(projectRoot, ".mvn", f)
			c.eachLine(path, func(line string, n int) {
				if v, ok := optValue(line, prop); ok && explicit.value == "" {
					explicit = cacheSetting{v, fmt.Sprintf("in %s:%d", path, n)}
				}
			})
		}
	}
	own := c.own("maven")
	if explicit.value != "" {
		if filepath.Clean(explicit.value) != own {
			c.steer("maven", "-D"+prop, own, explicit) // warns, sets nothing
		}
		return
	}
	if strings.ContainsAny(c.home, " \t\n") {
		// mvn splits MAVEN_OPTS at blanks: the property cannot carry it.
		c.warnings = append(c.warnings, fmt.Sprintf(
			"your home %q has a blank, which MAVEN_OPTS cannot carry, so maven inside has no repository of its own and fails to write yours; "+
				"add -Dmaven.repo.local=%s to the project's .mvn/maven.config (docs/threat-model.md, \"Build caches\")", c.home, own))
		return
	}
	opts := "-D" + prop + "=" + own + " -D" + prop + ".tail=" + filepath.Join(c.home, ".m2", "repository")
	if _, v, ok := c.getenv("MAVEN_OPTS", false); ok && strings.TrimSpace(v) != "" {
		opts = v + " " + opts
	}
	c.set = append(c.set, "MAVEN_OPTS="+opts)
}

// fromOpts is a -Dprop=value in one of the variables (JVM or tool
// options, words separated by spaces).
func (c *cacheSteer) fromOpts(prop string, names ...string) cacheSetting {
	for _, name := range names {
		if _, v, ok := c.getenv(name, false); ok {
			if val, ok := optValue(v, prop); ok {
				return cacheSetting{val, "in the environment, " + name}
			}
		}
	}
	return cacheSetting{}
}

// optValue finds -Dprop=value among the words of s; the last one counts,
// as for the JVM.
func optValue(s, prop string) (string, bool) {
	val, found := "", false
	for _, w := range strings.Fields(s) {
		if v, ok := strings.CutPrefix(w, "-D"+prop+"="); ok && v != "" {
			val, found = strings.Trim(v, `"'`), true
		}
	}
	return val, found
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
