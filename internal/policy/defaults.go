package policy

// The built-in defaults, written out twice on purpose: once as data
// (Defaults) and once as the commented file that `aigate init` writes
// (DefaultYAML). A test checks that the file parses back to the data.

var (
	defaultDenyRead = []string{
		".env", ".env.*", "secrets/", "credentials/",
		"*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_ed25519*",
		"~/.ssh/", "~/.aws/", "~/.config/gcloud/", "~/.azure/", "~/.kube/",
		"~/.docker/", "~/.netrc", "~/.git-credentials", "~/.config/git/credentials", "~/.config/gh/",
		"~/.npmrc", "~/.pypirc", "~/.gnupg/",
		"terraform.tfstate*", "*.tfvars",
		// Shell and REPL histories hold typed passwords and tokens.
		"*_history", "~/.histfile",
		// Browser profiles: cookies, saved passwords, session tokens.
		"~/.mozilla/", "~/snap/firefox/", "~/.config/google-chrome/", "~/.config/chromium/",
		"~/snap/chromium/", "~/.config/BraveSoftware/", "~/.config/microsoft-edge/",
		// Package registries, databases and cloud tools.
		"~/.cargo/credentials.toml", "~/.cargo/credentials", "~/.gem/credentials", "~/.pgpass",
		"~/.my.cnf", "~/.vault-token", "~/.terraform.d/credentials.tfrc.json",
		"~/.m2/settings.xml", "~/.m2/settings-security.xml", "~/.gradle/gradle.properties",
		"~/.yarnrc.yml", "~/.config/rclone/", "~/.config/containers/auth.json", "~/.s3cfg",
		// Keyrings and password stores.
		"~/.local/share/keyrings/", "~/.local/share/kwalletd/", "~/.password-store/",
		// Jupyter kernel connection files carry the kernels' HMAC keys.
		"~/.local/share/jupyter/runtime/",
	}
	// Known-public content that the name and glob rules above would deny:
	// package caches, virtualenvs, node_modules, system CA bundles,
	// certificates and public keys. Anchored deny_read paths (~/.ssh/) are
	// never excepted.
	defaultExceptRead = []string{
		"~/go/pkg/mod/", "~/.cargo/registry/", "~/.rustup/", "~/.m2/repository/",
		"~/.gradle/caches/", "~/.npm/_cacache/",
		"site-packages", "dist-packages", "node_modules",
		"/usr/share/", "/usr/lib/", "/etc/ssl/certs/", "/etc/pki/ca-trust/",
		"*.pub", "*public.pem", "*cert.pem", "*chain.pem",
	}
	// Files that run code outside the sandbox at the user's next ordinary
	// action (a login, a new shell, git, python, an editor, a cd): a write
	// there would plant code the sandbox cannot contain. See
	// docs/threat-model.md for why each is listed and what is not.
	defaultDenyWrite = []string{
		"~/.bashrc", "~/.zshrc", "~/.profile", "~/.bash_profile", "~/.zshenv",
		"~/.bash_login", "~/.bash_logout", "~/.zprofile", "~/.zlogin", "~/.zlogout",
		"~/.inputrc", "~/.config/fish/", "~/.pam_environment", "~/.config/environment.d/",
		"~/.xprofile", "~/.xsessionrc", "~/.xinitrc",
		"~/.gitconfig", "~/.config/git/",
		"~/.local/bin/", "~/bin/", "~/.local/lib/",
		// rustup puts ~/.cargo/bin in PATH and has the profile source
		// ~/.cargo/env; mvn sources ~/.mavenrc. (The sandbox's cargo has
		// a CARGO_HOME of its own: `cargo install` inside writes there.)
		"~/.cargo/bin/", "~/.cargo/env", "~/.mavenrc",
		// The user's systemd manager loads units from all three (and from
		// /run/user/UID/systemd, which run keeps read-only).
		"~/.config/autostart/", "~/.config/systemd/user/", "~/.config/systemd/user.control/", "~/.local/share/systemd/user/",
		// The desktop runs a .desktop file's Exec= when the user starts an
		// application of that name from the menu (one here overrides the
		// system's) or opens a link or file of a type it handles;
		// mimeapps.list picks those handlers.
		"~/.local/share/applications/", "~/.config/mimeapps.list",
		"~/.config/direnv/", "~/.local/share/direnv/",
		"~/.vimrc", "~/.vim/", "~/.config/nvim/", "~/.tmux.conf", "~/.config/tmux/",
		// commondir makes git read another directory's config and hooks;
		// config.worktree is read with extensions.worktreeConfig. Each
		// run adds the same for the other git directories it finds
		// (submodules, nested repositories, worktrees: package gitdirs).
		".git/hooks/", ".git/config", ".git/commondir", ".git/config.worktree",
		".envrc", "./.vscode/", "./.idea/",
		// Claude Code's settings declare hooks, a status line and an
		// apiKeyHelper (shell commands it runs) and permissions; its
		// project's .mcp.json declares MCP servers (programs it starts).
		// ~/.claude itself is tool state the sandbox may write; these
		// entries of it carry code (or instructions) the next claude
		// outside runs: hooks and MCP servers of installed plugins, the
		// registry of plugins and marketplaces, skills (scripts, hooks),
		// commands (`!` shell lines), agents (hooks, MCP servers), the
		// user's hook scripts and memory, output styles (instructions in
		// the system prompt). Claude Code writes
		// ~/.claude/plugins/store at every start, and clones (and removes
		// on failure) its official marketplace into plugins/marketplaces
		// at the first interactive start: not listed.
		"~/.claude/settings.json", "~/.claude/settings.local.json",
		"~/.claude/plugins/installed_plugins.json", "~/.claude/plugins/known_marketplaces.json",
		"~/.claude/plugins/known_marketplaces_claudeai.json",
		"~/.claude/plugins/cache/", "~/.claude/plugins/data/",
		"~/.claude/skills/", "~/.claude/commands/", "~/.claude/agents/", "~/.claude/hooks/",
		"~/.claude/CLAUDE.md", "~/.claude/rules/", "~/.claude/output-styles/",
		// Claude Code's local installation (`claude migrate-installer`;
		// the `claude` alias runs ~/.claude/local/claude): the program
		// itself, run outside at the user's next `claude`.
		"~/.claude/local/",
		// Read by a later claude outside as well (Claude Code 2.1.332; its
		// own sandbox keeps them read-only too): the subagents' memory
		// (agent-memory/<agent>/MEMORY.md joins the prompt of every later
		// subagent with `memory: user`; claude inside keeps its own, run
		// points it there), the user's workflows (scripts the Workflow
		// tool runs), the plugins of Cowork mode, /loop's instructions,
		// and the scheduled tasks and preview launch commands of a claude
		// started in the home.
		"~/.claude/agent-memory/", "~/.claude/workflows/", "~/.claude/cowork_plugins/",
		"~/.claude/loop.md", "~/.claude/scheduled_tasks.json", "~/.claude/launch.json",
		// The service that runs Claude Code's background sessions starts
		// the workers daemon.json lists without asking (its own file tools
		// refuse to write there); a session inside writes neither.
		"~/.claude/daemon.json", "~/.claude/daemon/",
		// session-env/<session>/*-hook-N.sh: what the hooks of a session
		// wrote to $CLAUDE_ENV_FILE, sourced before each of its Bash
		// commands, also when the session is resumed (or still runs)
		// outside. Hooks inside cannot set the environment that way.
		"~/.claude/session-env/",
		// ide/<port>.lock: where an IDE's local MCP server listens and its
		// token. A claude outside started with --ide, with autoConnectIde,
		// or in an IDE's terminal connects to the server a lock file names
		// when its workspaceFolders hold the working directory (Claude Code
		// 2.1.332, seen: a planted lock pointing at a loopback port), and
		// that server feeds the prompt (selections), answers its edits and
		// serves tools. Claude inside only removes stale ones (that fails).
		"~/.claude/ide/",
		// The OAuth token a claude outside sends its prompts with: one
		// replaced from inside (the attacker's account's) gets the user's
		// next sessions' prompts and code (2.1.332, seen: a planted file
		// is used as it is). Claude inside reads it to log in; a token it
		// refreshes is not saved (docs/threat-model.md). Not jobs/ nor
		// remote-settings.json, which Claude Code's own sandbox keeps
		// read-only: claude inside writes both at every interactive start
		// (jobs/pins.json through a temporary file it removes on failure).
		"~/.claude/.credentials.json",
		"./.claude/settings.json", "./.claude/settings.local.json", "./.mcp.json",
		"~/.aigate/", ".aigate.yaml",
	}
	defaultDenyExec = []string{
		"curl", "wget", "nc", "ncat", "netcat", "ssh", "scp", "sftp", "rsync", "ftp", "telnet",
	}
	// Variables of the user's shell that the tool must not inherit, and the
	// exceptions the tool itself needs to work.
	defaultDenyEnv = []string{
		"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "GITLAB_TOKEN",
		"NPM_TOKEN", "*SECRET*", "*PASSWORD*", "*_TOKEN", "*_API_KEY", "*_PRIVATE_KEY",
	}
	defaultAllowEnv = []string{
		"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "OPENAI_API_KEY",
	}
	// Claude Code's start-up connectivity check fetches api.anthropic.com
	// and platform.claude.com (also its OAuth token endpoint); its
	// updater asks downloads.claude.ai on every start. docs/presets.md
	// lists what other tools need.
	defaultAllowNet = []string{
		"api.anthropic.com", "platform.claude.com", "downloads.claude.ai", "api.openai.com", "api.github.com", "github.com",
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
	mode, backend, net, loopback := ModeEnforce, BackendAuto, NetDeny, LoopbackOwn
	c := &Config{
		Mode:          &mode,
		Backend:       &backend,
		DenyRead:      rules(defaultDenyRead),
		DenyWrite:     rules(defaultDenyWrite),
		DenyExec:      rules(defaultDenyExec),
		ExceptRead:    rules(defaultExceptRead),
		Net:           &net,
		AllowLoopback: &loopback,
		DenyEnv:       rules(defaultDenyEnv),
		AllowEnv:      rules(defaultAllowEnv),
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
  - id_rsa*        # id_rsa.pub is excepted below (except_read: "*.pub")
  - id_ed25519*
  - ~/.ssh/
  - ~/.aws/
  - ~/.config/gcloud/
  - ~/.azure/
  - ~/.kube/
  - ~/.docker/
  - ~/.netrc
  - ~/.git-credentials
  - ~/.config/git/credentials
  - ~/.config/gh/
  - ~/.npmrc
  - ~/.pypirc
  - ~/.gnupg/
  - terraform.tfstate*
  - "*.tfvars"
  # shell and REPL histories (.bash_history, .zsh_history, .psql_history, ...)
  - "*_history"
  - ~/.histfile
  # browser profiles: cookies, saved passwords, sessions
  - ~/.mozilla/
  - ~/snap/firefox/
  - ~/.config/google-chrome/
  - ~/.config/chromium/
  - ~/snap/chromium/
  - ~/.config/BraveSoftware/
  - ~/.config/microsoft-edge/
  # package registries, databases, cloud tools
  - ~/.cargo/credentials.toml
  - ~/.cargo/credentials
  - ~/.gem/credentials
  - ~/.pgpass
  - ~/.my.cnf
  - ~/.vault-token
  - ~/.terraform.d/credentials.tfrc.json
  - ~/.m2/settings.xml
  - ~/.m2/settings-security.xml
  - ~/.gradle/gradle.properties
  - ~/.yarnrc.yml
  - ~/.config/rclone/
  - ~/.config/containers/auth.json
  - ~/.s3cfg
  # keyrings and password stores
  - ~/.local/share/keyrings/
  - ~/.local/share/kwalletd/
  - ~/.password-store/
  # Jupyter kernel connection files (HMAC keys)
  - ~/.local/share/jupyter/runtime/

# Known-public content that the name and glob rules of deny_read would deny
# (credentials/ in a Go module, certifi's cacert.pem in a virtualenv, a
# public key): it stays readable. Anchored deny_read paths such as ~/.ssh/
# are never excepted. In a project file, entries need "aigate trust".
except_read:
  - ~/go/pkg/mod/
  - ~/.cargo/registry/
  - ~/.rustup/
  - ~/.m2/repository/
  - ~/.gradle/caches/
  - ~/.npm/_cacache/
  - site-packages
  - dist-packages
  - node_modules
  - /usr/share/
  - /usr/lib/
  - /etc/ssl/certs/
  - /etc/pki/ca-trust/
  - "*.pub"
  - "*public.pem"
  - "*cert.pem"
  - "*chain.pem"

# Files the agent may read but not modify: each runs code outside the
# sandbox at your next ordinary action (a new shell, a login, git, python,
# an editor, a cd). A rename of a directory above one counts as a write.
deny_write:
  # shells and login sessions
  - ~/.bashrc
  - ~/.zshrc
  - ~/.profile
  - ~/.bash_profile
  - ~/.zshenv
  - ~/.bash_login
  - ~/.bash_logout
  - ~/.zprofile
  - ~/.zlogin
  - ~/.zlogout
  - ~/.inputrc
  - ~/.config/fish/
  - ~/.pam_environment
  - ~/.config/environment.d/
  - ~/.xprofile
  - ~/.xsessionrc
  - ~/.xinitrc
  # git (core.fsmonitor, aliases, hooksPath run programs)
  - ~/.gitconfig
  - ~/.config/git/
  # programs ahead in PATH, Python's user site-packages (*.pth run at start)
  - ~/.local/bin/
  - ~/bin/
  - ~/.local/lib/
  # rustup's PATH entry and the file your profile sources; mvn sources
  # ~/.mavenrc (cargo inside has a CARGO_HOME of its own, see shared_caches)
  - ~/.cargo/bin/
  - ~/.cargo/env
  - ~/.mavenrc
  # started at login (your systemd manager's units)
  - ~/.config/autostart/
  - ~/.config/systemd/user/
  - ~/.config/systemd/user.control/
  - ~/.local/share/systemd/user/
  # run from your desktop's menu, or to open a link or file of their type
  - ~/.local/share/applications/
  - ~/.config/mimeapps.list
  # direnv runs .envrc on cd once allowed; its allow list is in ~/.local/share
  - ~/.config/direnv/
  - ~/.local/share/direnv/
  # editors and terminal multiplexers run their startup files
  - ~/.vimrc
  - ~/.vim/
  - ~/.config/nvim/
  - ~/.tmux.conf
  - ~/.config/tmux/
  # the project's own: git hooks and config (commondir points git at another
  # directory's), direnv, IDE tasks and settings; each run adds the same for
  # submodules, nested repositories and worktrees (aigate status lists them)
  - .git/hooks/
  - .git/config
  - .git/commondir
  - .git/config.worktree
  - .envrc
  - ./.vscode/
  - ./.idea/
  # Claude Code's settings (hooks, status line, apiKeyHelper run commands
  # outside the next time you start claude) and the project's MCP servers
  - ~/.claude/settings.json
  - ~/.claude/settings.local.json
  # what else in ~/.claude runs code (or steers claude) outside: installed
  # plugins and their registry, skills, commands, agents, hook scripts,
  # your memory, output styles. Install plugins outside aigate, or list
  # the path under writable: and remove it here. (aigate run also keeps
  # read-only the scripts your Claude settings run and the projects' auto
  # memory, ~/.claude/projects/*/memory, while claude inside keeps its own
  # in ~/.cache/aigate/claude-memory: aigate status lists them.)
  - ~/.claude/plugins/installed_plugins.json
  - ~/.claude/plugins/known_marketplaces.json
  - ~/.claude/plugins/known_marketplaces_claudeai.json
  - ~/.claude/plugins/cache/
  - ~/.claude/plugins/data/
  - ~/.claude/skills/
  - ~/.claude/commands/
  - ~/.claude/agents/
  - ~/.claude/hooks/
  - ~/.claude/CLAUDE.md
  - ~/.claude/rules/
  - ~/.claude/output-styles/
  # Claude Code itself where its local installation put it (the claude
  # alias runs ~/.claude/local/claude); update it outside aigate
  - ~/.claude/local/
  # read by a later claude outside as well: the subagents' memory (claude
  # inside keeps its own in ~/.cache/aigate/claude-agent-memory), your
  # workflows (scripts), Cowork's plugins, /loop's instructions, the
  # scheduled tasks and preview launch commands of a claude in your home
  - ~/.claude/agent-memory/
  - ~/.claude/workflows/
  - ~/.claude/cowork_plugins/
  - ~/.claude/loop.md
  - ~/.claude/scheduled_tasks.json
  - ~/.claude/launch.json
  # the workers that Claude Code's background-session service starts
  # without asking
  - ~/.claude/daemon.json
  - ~/.claude/daemon/
  # what a session's hooks leave for its Bash commands to source, also
  # when you resume the session outside ($CLAUDE_ENV_FILE fails inside)
  - ~/.claude/session-env/
  # IDE lock files: a claude outside with --ide (or autoConnectIde, or in
  # an IDE's terminal) connects to the server a lock file names
  - ~/.claude/ide/
  # your login (a token replaced from inside would send your next
  # sessions' prompts to another account; claude inside still reads it)
  - ~/.claude/.credentials.json
  - ./.claude/settings.json
  - ./.claude/settings.local.json
  - ./.mcp.json
  # aigate's own policy and trust
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

# Environment variables removed from the agent's environment ("*" at the
# start or end of a name; case does not matter), unless allow_env keeps
# them: the agent's own API key must reach it.
deny_env:
  - AWS_SECRET_ACCESS_KEY
  - AWS_SESSION_TOKEN
  - GITHUB_TOKEN
  - GH_TOKEN
  - GITLAB_TOKEN
  - NPM_TOKEN
  - "*SECRET*"
  - "*PASSWORD*"
  - "*_TOKEN"
  - "*_API_KEY"
  - "*_PRIVATE_KEY"
allow_env:
  - ANTHROPIC_API_KEY
  - ANTHROPIC_AUTH_TOKEN
  - CLAUDE_CODE_OAUTH_TOKEN
  - OPENAI_API_KEY

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
  - platform.claude.com     # Claude Code: start-up check, login
  - downloads.claude.ai     # Claude Code: update check on every start
  - api.openai.com
  - api.github.com
  - github.com
  - registry.npmjs.org
  - pypi.org
  - files.pythonhosted.org
  - proxy.golang.org
  - sum.golang.org

# Servers on loopback (127.0.0.0/8, ::1) that the sandbox may reach, with
# net: deny or allow: own (those it started itself, e.g. a dev server or a
# test database), false (none), or all (every local service, including your
# databases, browsers and other projects' servers). Ports listed in allow_net,
# e.g. "127.0.0.1:5432", are reachable whatever this says.
allow_loopback: own

# With net: deny, other hosts cannot connect to servers in the sandbox;
# true lets them (e.g. to try a dev server from a phone).
# allow_inbound: false

# User namespaces: without them the tool cannot mount anything, so it
# cannot bind a directory over a path a rule or allow_unix names. git, go,
# npm, node, python and Claude Code need none; bubblewrap and Chromium's
# sandbox (Playwright, Puppeteer, Electron) do. true lets the tool create them.
# allow_userns: false

# io_uring: refused on the fanotify backend, whose seccomp filter cannot see
# io_uring's own socket operation; libuv (node) and liburing users fall back
# to ordinary calls. true allows it (the BPF LSM backend always does).
# allow_io_uring: false

# Unix sockets the agent may connect to, e.g. /var/run/docker.sock. On the
# fanotify backend run refuses a socket (or directory) the tool could swap
# for a link to another, i.e. one in a directory it can write: /tmp/...,
# /run/user/UID/..., the project (docs/network.md).
# allow_unix: []

# Your home is read-only inside the sandbox (where the kernel has Landlock),
# except the project, temp directories and the state of common tools
# (~/.cache/aigate, ~/.claude, ~/.npm, ~/go, ...: docs/threat-model.md). More:
# writable:
#   - ~/.config/my-tool

# go, npm, pip, cargo, gradle and maven inside the sandbox use caches of
# the sandboxes' own (~/.cache/aigate/go-build, go-mod, npm, pip, cargo,
# gradle, maven), and your own caches (~/.cache/go-build, ~/go/pkg/mod,
# ~/.npm, ~/.cache/pip, ~/.cargo/registry and git, ~/.gradle,
# ~/.m2/repository) are deny_write there: what a sandbox builds or
# downloads cannot run at your next build outside it. Naming a tool here
# gives the sandbox your caches instead (faster first builds, but a
# sandbox can then plant code in them).
# shared_caches: []

# How long addresses resolved for allow_net domains stay allowed
# (record TTLs are clamped to this range; these are the defaults).
# dns:
#   min_ttl: 60s
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
