package policy

// The built-in defaults, written out twice on purpose: once as data
// (Defaults) and once as the commented file that `aigate init` writes
// (DefaultYAML). A test checks that the file parses back to the data.

var (
	defaultDenyRead = []string{
		".env", ".env.*", "secrets/", "credentials/",
		"*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_ed25519*",
		"~/.ssh/", "~/.aws/", "~/.config/gcloud/", "~/.azure/", "~/.kube/config",
		"~/.docker/config.json", "~/.netrc", "~/.git-credentials", "~/.config/gh/",
		"~/.npmrc", "~/.pypirc", "~/.gnupg/",
		"terraform.tfstate*", "*.tfvars",
	}
	defaultDenyWrite = []string{
		"~/.bashrc", "~/.zshrc", "~/.profile", "~/.bash_profile", "~/.zshenv",
		".git/hooks/", ".git/config", "~/.aigate/", ".aigate.yaml",
	}
	defaultDenyExec = []string{
		"curl", "wget", "nc", "ncat", "netcat", "ssh", "scp", "sftp", "rsync", "ftp", "telnet",
	}
	defaultAllowNet = []string{
		"api.anthropic.com", "api.openai.com", "api.github.com", "github.com",
		"registry.npmjs.org", "pypi.org", "files.pythonhosted.org",
		"proxy.golang.org", "sum.golang.org",
	}
)

// Defaults returns the built-in default configuration: what `aigate init`
// writes, and what applies when no global file exists. Its rules have a
// built-in Source.
func Defaults() *Config {
	rules := func(patterns []string) []PathRule {
		out := make([]PathRule, len(patterns))
		for i, p := range patterns {
			out[i] = PathRule{Pattern: p}
		}
		return out
	}
	mode, backend, net, loopback := ModeEnforce, BackendAuto, NetDeny, true
	c := &Config{
		Mode:          &mode,
		Backend:       &backend,
		DenyRead:      rules(defaultDenyRead),
		DenyWrite:     rules(defaultDenyWrite),
		DenyExec:      rules(defaultDenyExec),
		Net:           &net,
		AllowLoopback: &loopback,
	}
	for _, s := range defaultAllowNet {
		ep, err := parseEndpoint(s)
		if err != nil {
			panic("policy: bad default endpoint: " + err.Error())
		}
		c.AllowNet = append(c.AllowNet, ep)
	}
	return c
}

// DefaultYAML returns the commented global configuration file that
// `aigate init` writes. It parses to Defaults().
func DefaultYAML() []byte {
	return []byte(defaultYAML)
}

const defaultYAML = `# aigate configuration: what AI coding agents started with "aigate run" may
# not read, write, execute or connect to. The kernel enforces it.
#
# This is the global file (~/.aigate/config.yaml). A project can add rules in
# .aigate.yaml at its root; rules that loosen this policy (allow_*, net: allow,
# mode: audit, ...) take effect there only after you review the file and run
# "aigate trust". Edit this file, or use "aigate deny" and "aigate allow".
#
# Pattern syntax (gitignore-like, see
# https://github.com/aigate-dev/aigate/blob/main/docs/patterns.md):
#   .env            that name at any depth, anywhere (also a directory and
#                   everything in it); "secrets/" is the same as "secrets"
#   *.pem, id_rsa*  one "*" at the start or the end of a name
#   config/x.yaml   a path below the project root (any pattern with a "/")
#   ~/.ssh/         below your home directory; /etc/shadow is absolute
# Other globs (?, [ab], {a,b}, **/ in the middle, a/*.pem) are rejected.

# enforce: refuse denied operations. audit: only report them.
mode: enforce

# auto picks BPF LSM when the kernel supports it, else fanotify.
# lsm or fanotify force one.
backend: auto

# Files the agent may not open at all.
deny_read:
  - .env
  - .env.*
  - secrets/
  - credentials/
  - "*.pem"
  - "*.key"
  - "*.p12"
  - "*.pfx"
  - id_rsa*        # id_rsa.pub too: deny lists over-match on purpose
  - id_ed25519*
  - ~/.ssh/
  - ~/.aws/
  - ~/.config/gcloud/
  - ~/.azure/
  - ~/.kube/config
  - ~/.docker/config.json
  - ~/.netrc
  - ~/.git-credentials
  - ~/.config/gh/
  - ~/.npmrc
  - ~/.pypirc
  - ~/.gnupg/
  - terraform.tfstate*
  - "*.tfvars"

# Files the agent may read but not modify.
deny_write:
  - ~/.bashrc
  - ~/.zshrc
  - ~/.profile
  - ~/.bash_profile
  - ~/.zshenv
  - .git/hooks/
  - .git/config
  - ~/.aigate/
  - .aigate.yaml

# Programs the agent may not run; a bare name matches that program anywhere.
deny_exec:
  - curl
  - wget
  - nc
  - ncat
  - netcat
  - ssh
  - scp
  - sftp
  - rsync
  - ftp
  - telnet

# allow_read, allow_write, allow_exec cancel a deny rule inherited from this
# file, written exactly as the deny entry, e.g. in a trusted .aigate.yaml:
# allow_read:
#   - "*.pem"

# Network: deny refuses every connection except to allow_net;
# allow permits everything (the cloud metadata service stays denied).
net: deny

# Domains (exact, or *.example.com for subdomains), IPs and CIDRs, each
# optionally with :port, e.g. "*.githubusercontent.com", "10.0.0.0/8:5432".
allow_net:
  - api.anthropic.com
  - api.openai.com
  - api.github.com
  - github.com
  - registry.npmjs.org
  - pypi.org
  - files.pythonhosted.org
  - proxy.golang.org
  - sum.golang.org

# Local servers (127.0.0.0/8, ::1) are reachable even with net: deny.
allow_loopback: true

# Unix sockets the agent may connect to, e.g. /run/user/1000/podman/podman.sock.
# allow_unix: []

# How long addresses resolved for allow_net domains stay allowed
# (record TTLs are clamped to this range).
# dns:
#   min_ttl: 30s
#   max_ttl: 1h

# Limits for the whole sandbox (0 or unlimited: none).
# resource_limits:
#   max_memory: 4G
#   max_cpu_percent: 200     # 100 = one CPU
#   max_pids: 1024
#   if_unavailable: warn     # or refuse: no run where cgroup v2 cannot apply them

# Secrets to mask in the agent's terminal output (Go regular expressions).
# mask_output:
#   - "ghp_[A-Za-z0-9]{36}"
#   - "AKIA[0-9A-Z]{16}"
`
