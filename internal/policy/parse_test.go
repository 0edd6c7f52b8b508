package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const cfgPath = "~/.aigate/config.yaml"

func TestParseAllKeys(t *testing.T) {
	src := `# comment
mode: audit
backend: fanotify
deny_read:
  - .env
  - "*.pem"
deny_write: [.git/hooks/]
deny_exec:
  - curl
allow_read:
  - id_rsa*
allow_write: []
allow_exec:
net: allow
allow_net:
  - GitHub.com.
  - "*.example.com:443"
  - 10.1.2.3/8
  - "[::1]:8080"
allow_loopback: false
allow_unix:
  - /run/user/1000/podman/podman.sock
dns:
  min_ttl: 30s
  max_ttl: 1h
resource_limits:
  max_memory: 4G
  max_cpu_percent: 150
  max_pids: unlimited
mask_output:
  - "ghp_[A-Za-z0-9]{36}"
`
	c, err := Parse(cfgPath, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if *c.Mode != ModeAudit || c.ModeLine != 2 || *c.Backend != BackendFanotify || c.BackendLine != 3 {
		t.Errorf("mode %v:%d backend %v:%d", *c.Mode, c.ModeLine, *c.Backend, c.BackendLine)
	}
	if got := c.DenyRead; len(got) != 2 || got[1].Pattern != "*.pem" || got[1].Source.String() != cfgPath+":6" {
		t.Errorf("DenyRead = %+v", got)
	}
	if len(c.DenyWrite) != 1 || c.DenyWrite[0].Source.Line != 7 || len(c.DenyExec) != 1 || len(c.AllowRead) != 1 ||
		len(c.AllowWrite) != 0 || len(c.AllowExec) != 0 {
		t.Errorf("lists: %+v %+v %+v", c.DenyWrite, c.DenyExec, c.AllowRead)
	}
	if *c.Net != NetAllow || c.NetLine != 14 {
		t.Errorf("net %v:%d", *c.Net, c.NetLine)
	}
	var eps []string
	for _, ep := range c.AllowNet {
		eps = append(eps, ep.String())
	}
	if strings.Join(eps, " ") != "github.com *.example.com:443 10.0.0.0/8 [::1]:8080" || c.AllowNet[2].Source.Line != 18 {
		t.Errorf("AllowNet = %v", eps)
	}
	if *c.AllowLoopback != LoopbackNone || c.AllowLoopbackTrue || c.AllowLoopbackLine != 20 || len(c.AllowUnix) != 1 {
		t.Errorf("loopback %v:%d unix %v", *c.AllowLoopback, c.AllowLoopbackLine, c.AllowUnix)
	}
	if *c.DNS != (DNS{30 * time.Second, time.Hour}) || c.DNSLine != 23 {
		t.Errorf("dns %+v:%d", *c.DNS, c.DNSLine)
	}
	if *c.ResourceLimits != (ResourceLimits{MaxMemory: 4 << 30, MaxCPUPercent: 150}) || c.LimitLines != (LimitLines{MaxMemory: 27, MaxCPUPercent: 28, MaxPIDs: 29}) {
		t.Errorf("limits %+v %+v", *c.ResourceLimits, c.LimitLines)
	}
	if len(c.MaskOutput) != 1 || c.MaskOutput[0].Source.Line != 31 {
		t.Errorf("mask %+v", c.MaskOutput)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, src := range []string{"", "\n\n", "# only a comment\n", "---\n", "~\n", "null"} {
		c, err := Parse("f", []byte(src))
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
			continue
		}
		if c.Mode != nil || c.Net != nil || c.DenyRead != nil || c.Path != "f" {
			t.Errorf("Parse(%q) = %+v, want empty", src, c)
		}
	}
}

func TestParseAliases(t *testing.T) {
	c, err := Parse("f", []byte("deny_read: &common\n  - .env\ndeny_write: *common\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.DenyWrite) != 1 || c.DenyWrite[0].Pattern != ".env" {
		t.Errorf("DenyWrite = %+v", c.DenyWrite)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"unknown key", "mode: enforce\ndeny_reed:\n  - .env\n",
			`~/.aigate/config.yaml:2: unknown key "deny_reed" (did you mean "deny_read"?)`},
		{"dashed key", "deny-write: []\n", `~/.aigate/config.yaml:1: unknown key "deny-write" (did you mean "deny_write"?)`},
		{"far key", "frobnicate: 1\n",
			`~/.aigate/config.yaml:1: unknown key "frobnicate" (valid: mode, backend, deny_read, deny_write, deny_exec, allow_read, allow_write, allow_exec, except_read, net, allow_net, allow_loopback, allow_inbound, allow_unix, dns, allow_userns, allow_io_uring, resource_limits, mask_output, deny_env, allow_env, writable, shared_caches)`},
		{"writable relative", "writable:\n  - ~/.cache\n  - .config\n",
			`~/.aigate/config.yaml:3: writable entry ".config" is not a path beneath your home or an absolute path (start it with ~/ (your home) or / (an absolute path))`},
		{"writable pattern", "writable:\n  - ~/.cache/*\n",
			`~/.aigate/config.yaml:2: writable entry "~/.cache/*" is a pattern; writable takes paths (name the directory itself: everything beneath it becomes writable)`},
		{"writable dotdot", "writable:\n  - ~/x/../.bashrc\n",
			`~/.aigate/config.yaml:2: writable entry "~/x/../.bashrc" climbs with .. (write the path without ..)`},
		{"nested unknown", "resource_limits:\n  max_mem: 1G\n",
			`~/.aigate/config.yaml:2: unknown key "resource_limits.max_mem" (did you mean "max_memory"?)`},
		{"duplicate", "deny_read: [a]\nnet: deny\ndeny_read: [b]\n",
			`~/.aigate/config.yaml:3: duplicate key "deny_read" (the first is on line 1; keep one and merge their values)`},
		{"malformed", "deny_read:\n  - .env\n  - a\n   b: c\n",
			`~/.aigate/config.yaml:4: invalid YAML: mapping values are not allowed in this context`},
		{"unclosed flow", "mode: enforce\ndeny_read: [a, b\nnet: deny\n", `~/.aigate/config.yaml:2: invalid YAML: did not find expected ',' or ']'`},
		{"unterminated quote", "mode: enforce\ndeny_read:\n  - \"abc\n", `~/.aigate/config.yaml:3: invalid YAML: found unexpected end of stream`},
		{"tab", "deny_read:\n\t- .env\n",
			`~/.aigate/config.yaml:2: invalid YAML: found character that cannot start any token (indent with spaces: YAML does not allow tabs)`},
		{"unknown anchor", "mode: enforce\ndeny_read: *x\n", `~/.aigate/config.yaml:2: invalid YAML: unknown anchor 'x' referenced`},
		{"two documents", "mode: enforce\n---\nnet: deny\n",
			`~/.aigate/config.yaml:2: a second YAML document (after "---") (keep everything in one document)`},
		{"top-level list", "- .env\n",
			"~/.aigate/config.yaml:1: the file must be a mapping of keys such as deny_read (see `aigate init` for an example)"},
		{"map for list", "deny_read:\n  a: b\n",
			"~/.aigate/config.yaml:2: deny_read must be a list of patterns, not a mapping (write one entry per line:\n    deny_read:\n      - .env)"},
		{"scalar for list", "deny_exec: curl\n", "~/.aigate/config.yaml:1: deny_exec must be a list of patterns, not \"curl\""},
		{"number entry", "deny_read:\n  - .env\n  - 1234\n",
			`~/.aigate/config.yaml:3: deny_read entries must be strings, not the number 1234 (quote it: "1234")`},
		{"nested list entry", "allow_net:\n  - [a, b]\n", `~/.aigate/config.yaml:2: allow_net entries must be strings, not a list`},
		{"empty entry", "deny_read:\n  -\n", `~/.aigate/config.yaml:2: empty entry in deny_read (remove the empty "-" line)`},
		{"number for string", "mode: 1\n", `~/.aigate/config.yaml:1: mode must be enforce or audit, not the number 1 (write mode: enforce or audit)`},
		{"bad enum", "net: denied\n", `~/.aigate/config.yaml:1: net must be deny or allow, not "denied" (did you mean "deny"?)`},
		{"bad backend", "backend: ebpf\n", `~/.aigate/config.yaml:1: backend must be auto or lsm or fanotify, not "ebpf"`},
		{"loopback", "allow_loopback: yes\n",
			`~/.aigate/config.yaml:1: allow_loopback must be own or all or false, not "yes" (write allow_loopback: own or all or false)`},
		{"loopback typo", "allow_loopback: owm\n",
			`~/.aigate/config.yaml:1: allow_loopback must be own or all or false, not "owm" (did you mean "own"?)`},
		{"bad pattern", "deny_read:\n  - .env\n  - config/*.yaml\n",
			`~/.aigate/config.yaml:3: deny_read pattern "config/*.yaml": a "*" in an anchored pattern cannot be enforced in the kernel (deny the directory "config/" or the name glob "*.yaml")`},
		{"bad allow pattern", "allow_write:\n  - '!x'\n", `~/.aigate/config.yaml:2: allow_write pattern "!x": "!" negation is not supported`},
		{"bad domain", "allow_net:\n  - exa_mple.com\n",
			`~/.aigate/config.yaml:2: allow_net entry "exa_mple.com": domain "exa_mple.com" contains '_' (domains hold letters, digits, hyphens and dots)`},
		{"bad port", "allow_net:\n  - github.com:99999\n", `~/.aigate/config.yaml:2: allow_net entry "github.com:99999": invalid port "99999" (ports are 1-65535)`},
		{"bad cidr", "allow_net:\n  - 10.0.0.0/33\n", `~/.aigate/config.yaml:2: allow_net entry "10.0.0.0/33": invalid prefix "10.0.0.0/33"`},
		{"url", "allow_net:\n  - https://github.com/x\n",
			`~/.aigate/config.yaml:2: allow_net entry "https://github.com/x": "https://" is a URL scheme, not part of a host (write the host only: "github.com")`},
		{"bad size", "resource_limits:\n  max_memory: 4X\n",
			`~/.aigate/config.yaml:2: resource_limits.max_memory: invalid size "4X" (write bytes or a whole number with a unit: 512M, 4G)`},
		{"fraction size", "resource_limits:\n  max_memory: 1.5G\n", `size "1.5G" is not a whole number (use a smaller unit: 1536M instead of 1.5G)`},
		{"tiny memory", "resource_limits:\n  max_memory: 512\n", `~/.aigate/config.yaml:2: resource_limits.max_memory "512" is less than 1M`},
		{"negative pids", "resource_limits:\n  max_pids: -1\n",
			`~/.aigate/config.yaml:2: resource_limits.max_pids must be a whole number from 0 (unlimited) to 4194304, not "-1"`},
		{"limits list", "resource_limits: [1]\n", `~/.aigate/config.yaml:1: resource_limits must be a mapping with the keys max_memory, max_cpu_percent, max_pids, if_unavailable, not a list`},
		{"cpu bool", "resource_limits:\n  max_cpu_percent: true\n", `~/.aigate/config.yaml:2: resource_limits.max_cpu_percent must be a number, not the boolean true`},
		{"duration", "dns:\n  min_ttl: 30\n",
			`~/.aigate/config.yaml:2: dns.min_ttl must be a duration, not the number 30 (write a duration with a unit, e.g. 30s, 5m or 1h)`},
		{"ttl order", "dns:\n  min_ttl: 2h\n  max_ttl: 1h\n", `~/.aigate/config.yaml:2: dns.min_ttl 2h0m0s is greater than dns.max_ttl 1h0m0s`},
		{"bad regexp", "mask_output:\n  - \"sk-[a-z\"\n",
			"~/.aigate/config.yaml:2: mask_output entry \"sk-[a-z\": missing closing ]: `[a-z` (mask_output uses Go regular expressions (RE2 syntax))"},
		{"empty regexp", "mask_output:\n  - \"x*\"\n", `~/.aigate/config.yaml:2: mask_output entry "x*" matches the empty string`},
		{"control char", "deny_read:\n  - a\n  - \"b\\x01\"\n", `~/.aigate/config.yaml:3: deny_read pattern "b\x01": contains the control character U+0001`},
	} {
		_, err := Parse(cfgPath, []byte(tc.src))
		if err == nil {
			t.Errorf("%s: no error, want %q", tc.name, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, err, tc.want)
		}
		var perr *Error
		if !errors.As(err, &perr) || perr.File != cfgPath || perr.Line == 0 {
			t.Errorf("%s: %v is not an *Error with file and line", tc.name, err)
		}
	}
}

func TestParseErrorsAll(t *testing.T) {
	src := "deny_read:\n  - a/*.b\n  - 7\nmode: audt\nnet: {}\n"
	_, err := Parse("f", []byte(src))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 4 {
		t.Fatalf("err = %v, want 4 problems", err)
	}
	for i, line := range []int{2, 3, 4, 5} {
		if errs[i].Line != line {
			t.Errorf("problem %d on line %d, want %d: %v", i, errs[i].Line, line, errs[i])
		}
	}
	var first *Error
	if !errors.As(err, &first) || first.Line != 2 {
		t.Errorf("errors.As finds %v", first)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"0", 0}, {"1048576", 1 << 20}, {"512M", 512 << 20}, {"512m", 512 << 20}, {"4G", 4 << 30},
		{"4GiB", 4 << 30}, {"4gb", 4 << 30}, {"1K", 1024}, {"2T", 2 << 40}, {"100B", 100},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "M", "-1", "+1", "1.5G", "4X", "4GG", "4BK", "16777216T", "18446744073709551616"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(string(DefaultYAML()))
	for _, s := range []string{
		"", "mode: audit\nnet: allow\n", "deny_read: [a/*.b, 3]\n", "deny_read: &a [x]\ndeny_write: *a\n",
		"resource_limits:\n  max_memory: 4G\n", "dns:\n  min_ttl: 1s\n", "allow_net: ['[::1]:80', 10.0.0.0/8]\n",
		"mask_output: ['a+']\n", "a: [b", "deny_read:\n\t- x\n", "x: y\n---\nz: 1",
		"allow_unix: [/run/x.sock]\nallow_loopback: false\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := Parse("f.yaml", []byte(src))
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) || perr.File != "f.yaml" {
				t.Fatalf("error %q is not an *Error naming the file", err)
			}
			return
		}
		for _, trusted := range []bool{false, true} {
			p, _ := Merge(nil, c, trusted)
			comp, err := Compile(p, testEnv)
			if err != nil {
				// Parse validated every value; only expansion can fail.
				if !strings.Contains(err.Error(), "longer than") && !strings.Contains(err.Error(), "expands to") {
					t.Fatalf("Compile after Parse: %v", err)
				}
				continue
			}
			checkCompiled(t, comp)
		}
	})
}
