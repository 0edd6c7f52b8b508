package policy

import (
	"slices"
	"strings"
	"testing"
)

// summaryOf is the Summary of one global file's content.
func summaryOf(t *testing.T, yaml string) Summary {
	t.Helper()
	c, err := Parse("config.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := Merge(c, nil, true)
	return Summarize(p)
}

const acceptedYAML = `deny_read: [.env, "*.pem", ~/.ssh/, id_rsa*, secrets/prod]
deny_write: [~/.bashrc]
deny_exec: [curl]
except_read: ["*.pub"]
net: deny
allow_net: [api.github.com, "*.npmjs.org", 10.0.0.0/8, "127.0.0.1:8080"]
allow_loopback: own
allow_unix: [/run/aigate/x.sock]
writable: [~/.cache/]
deny_env: [GITHUB_TOKEN, "*_SECRET*", "AWS_*"]
allow_env: [ANTHROPIC_API_KEY]
mask_output: ["sk-[a-z]+"]
resource_limits:
  max_memory: 1G
  max_cpu_percent: 200
  max_pids: 100
  if_unavailable: refuse
dns:
  min_ttl: 30s
  max_ttl: 10m
`

// TestLoosenedEachKind: every way a global file can allow more than the
// accepted one is listed, each by what changed.
func TestLoosenedEachKind(t *testing.T) {
	for _, tc := range []struct {
		name, from, to, want string
	}{
		{"deny_read removed", ".env, ", "", `deny_read ".env" removed`},
		{"deny_read narrowed", "~/.ssh/", "~/.ssh/id_rsa", `deny_read "~/.ssh" removed`},
		{"deny_read glob narrowed", `"*.pem"`, `"*.key.pem"`, `deny_read "*.pem" removed`},
		{"deny_read cancelled by allow_read", "deny_write: [~/.bashrc]", "deny_write: [~/.bashrc]\nallow_read: [.env]", `deny_read ".env" removed`},
		{"deny_write removed", "deny_write: [~/.bashrc]", "deny_write: []", `deny_write "~/.bashrc" removed`},
		{"deny_exec removed", "deny_exec: [curl]", "deny_exec: []", `deny_exec "curl" removed`},
		{"except_read added", `except_read: ["*.pub"]`, `except_read: ["*.pub", .env]`, `except_read ".env" added`},
		{"net", "net: deny", "net: allow", "net: deny → allow"},
		{"allow_net added", "api.github.com,", "api.github.com, evil.example,", `allow_net "evil.example" added`},
		{"allow_net widened", "api.github.com,", "\"*.github.com\",", `allow_net "*.github.com" added`},
		{"allow_net port dropped", `"127.0.0.1:8080"`, `127.0.0.1`, `allow_net "127.0.0.1" added`},
		{"allow_loopback", "allow_loopback: own", "allow_loopback: all", "allow_loopback: own → all"},
		{"allow_inbound", "allow_loopback: own", "allow_loopback: own\nallow_inbound: true", "allow_inbound: false → true"},
		{"allow_userns", "allow_loopback: own", "allow_loopback: own\nallow_userns: true", "allow_userns: false → true"},
		{"allow_io_uring", "allow_loopback: own", "allow_loopback: own\nallow_io_uring: true", "allow_io_uring: false → true"},
		{"allow_unix added", "allow_unix: [/run/aigate/x.sock]", "allow_unix: [/run/aigate/x.sock, /run/docker.sock]", `allow_unix "/run/docker.sock" added`},
		{"writable added", "writable: [~/.cache/]", "writable: [~/.cache/, ~/.config/]", `writable "~/.config" added`},
		{"deny_env removed", "GITHUB_TOKEN, ", "", `deny_env "GITHUB_TOKEN" removed`},
		{"allow_env added", "allow_env: [ANTHROPIC_API_KEY]", "allow_env: [ANTHROPIC_API_KEY, GITHUB_TOKEN]", `allow_env "GITHUB_TOKEN" added`},
		{"mask_output removed", `mask_output: ["sk-[a-z]+"]`, "mask_output: []", `mask_output "sk-[a-z]+" removed`},
		{"mode", "net: deny", "net: deny\nmode: audit", "mode: enforce → audit"},
		{"backend", "net: deny", "net: deny\nbackend: fanotify", "backend: auto → fanotify"},
		{"max_memory raised", "max_memory: 1G", "max_memory: 2G", "resource_limits.max_memory: 1G → 2G"},
		{"max_pids removed", "  max_pids: 100\n", "", "resource_limits.max_pids: 100 → unlimited"},
		{"max_cpu_percent raised", "max_cpu_percent: 200", "max_cpu_percent: 400", "resource_limits.max_cpu_percent: 200 → 400"},
		{"if_unavailable", "if_unavailable: refuse", "if_unavailable: warn", "resource_limits.if_unavailable: refuse → warn"},
		{"dns min_ttl", "min_ttl: 30s", "min_ttl: 5m", "dns.min_ttl: 30s → 5m0s"},
		{"dns max_ttl", "max_ttl: 10m", "max_ttl: 2h", "dns.max_ttl: 10m0s → 2h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := strings.Replace(acceptedYAML, tc.from, tc.to, 1)
			if now == acceptedYAML {
				t.Fatalf("%q is not in the accepted file", tc.from)
			}
			got := Loosened(summaryOf(t, acceptedYAML), summaryOf(t, now))
			if !slices.Contains(got, tc.want) || len(got) != 1 {
				t.Errorf("Loosened = %q, want exactly [%q]", got, tc.want)
			}
		})
	}
}

// TestLoosenedNotTightening: what allows less than, or the same as, the
// accepted file is not listed.
func TestLoosenedNotTightening(t *testing.T) {
	accepted := summaryOf(t, acceptedYAML)
	if got := Loosened(accepted, accepted); got != nil {
		t.Errorf("the same policy: %q", got)
	}
	for _, tc := range []struct{ name, from, to string }{
		{"deny_read added", ".env, ", ".env, credentials, "},
		{"deny_read respelt", ".env, ", "\"**/.env\", "},
		{"deny_read widened", "secrets/prod", "./secrets"},
		{"deny_read anchored widened", "~/.ssh/", "~/"},
		{"deny_read prefix widened", "id_rsa*", "id_*"},
		{"except_read removed", `except_read: ["*.pub"]`, "except_read: []"},
		{"allow_net removed", "api.github.com, ", ""},
		{"allow_net narrowed", `"*.npmjs.org"`, "registry.npmjs.org"},
		{"allow_net prefix narrowed", "10.0.0.0/8", "10.1.0.0/16"},
		{"allow_net port added", "api.github.com,", "\"api.github.com:443\","},
		{"allow_loopback", "allow_loopback: own", "allow_loopback: false"},
		{"allow_unix removed", "allow_unix: [/run/aigate/x.sock]", "allow_unix: []"},
		{"writable narrowed", "writable: [~/.cache/]", "writable: [~/.cache/go-build]"},
		{"deny_env widened", "GITHUB_TOKEN, ", "\"*_TOKEN\", "},
		{"allow_env removed", "allow_env: [ANTHROPIC_API_KEY]", "allow_env: []"},
		{"mask_output added", `mask_output: ["sk-[a-z]+"]`, `mask_output: ["sk-[a-z]+", "ghp_[A-Za-z0-9]+"]`},
		{"backend lsm", "net: deny", "net: deny\nbackend: lsm"},
		{"max_memory lowered", "max_memory: 1G", "max_memory: 512M"},
		{"dns ttls lowered", "min_ttl: 30s\n  max_ttl: 10m", "min_ttl: 10s\n  max_ttl: 5m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := strings.Replace(acceptedYAML, tc.from, tc.to, 1)
			if got := Loosened(accepted, summaryOf(t, now)); got != nil {
				t.Errorf("Loosened = %q, want nothing", got)
			}
		})
	}
}

// TestLoosenedDefaults: a global file removed means the built-in defaults,
// which loosen what the user had added to them; the defaults written out
// by `aigate init` are the defaults.
func TestLoosenedDefaults(t *testing.T) {
	defaults, _ := Merge(nil, nil, true)
	written := summaryOf(t, string(DefaultYAML()))
	if got := Loosened(written, Summarize(defaults)); got != nil {
		t.Errorf("the defaults loosen the written defaults: %q", got)
	}
	if got := Loosened(Summarize(defaults), written); got != nil {
		t.Errorf("the written defaults loosen the defaults: %q", got)
	}
	more := summaryOf(t, string(DefaultYAML())+"\nallow_userns: false\n")
	more.DenyRead = append(more.DenyRead, "extra")
	if got := Loosened(more, Summarize(defaults)); !slices.Equal(got, []string{`deny_read "extra" removed`}) {
		t.Errorf("defaults after a tighter file: %q", got)
	}
}
