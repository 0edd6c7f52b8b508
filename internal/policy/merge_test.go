package policy

import (
	"slices"
	"strings"
	"testing"
)

func mustParse(t *testing.T, path, src string) *Config {
	t.Helper()
	c, err := Parse(path, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func patterns(rs []PathRule) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Pattern)
	}
	return out
}

const globalSrc = `mode: enforce
deny_read:
  - .env
  - "*.pem"
  - secrets/
deny_exec: [curl]
net: deny
allow_net: [github.com]
allow_loopback: all
resource_limits:
  max_memory: 4G
  max_pids: 512
`

// A project file that tries everything, good and bad.
const projectSrc = `mode: audit
backend: lsm
deny_read:
  - secrets
  - terraform.tfstate*
deny_write: [Makefile]
allow_read:
  - "**/*.pem"
allow_exec: [curl]
net: allow
allow_net: [evil.example.com]
allow_loopback: false
allow_unix: [/var/run/docker.sock]
dns:
  max_ttl: 24h
resource_limits:
  max_memory: 8G
  max_pids: 100
  max_cpu_percent: 50
mask_output: ["sk-[a-z]+"]
`

func TestMergeUntrustedProject(t *testing.T) {
	g := mustParse(t, "~/.aigate/config.yaml", globalSrc)
	proj := mustParse(t, "/p/.aigate.yaml", projectSrc)
	p, warns := Merge(g, proj, false)

	// Tightening applies.
	if got := patterns(p.DenyRead); !slices.Equal(got, []string{".env", "*.pem", "secrets/", "terraform.tfstate*"}) {
		t.Errorf("DenyRead = %v", got)
	}
	if got := patterns(p.DenyWrite); !slices.Equal(got, []string{"Makefile", "~/.cache/go-build/", "~/go/pkg/mod/", "~/.npm/", "~/.cache/pip/",
		"~/.cargo/registry/", "~/.cargo/git/", "~/.gradle/", "~/.m2/repository/"}) {
		t.Errorf("DenyWrite = %v", got)
	}
	if p.Loopback != LoopbackNone || p.LoopbackSource.String() != "/p/.aigate.yaml:12" {
		t.Errorf("loopback %v from %v", p.Loopback, p.LoopbackSource)
	}
	if p.Limits != (ResourceLimits{MaxMemory: 4 << 30, MaxCPUPercent: 50, MaxPIDs: 100}) {
		t.Errorf("limits %+v", p.Limits)
	}
	if got := patterns(p.MaskOutput); !slices.Equal(got, []string{"sk-[a-z]+"}) {
		t.Errorf("mask %v", got)
	}
	// Loosening does not: the clone cannot open the network for itself.
	if p.Mode != ModeEnforce || p.Backend != BackendAuto || p.Net != NetDeny || len(p.AllowNet) != 1 ||
		len(p.AllowUnix) != 0 || p.DNS != (DNS{}) || patterns(p.DenyExec)[0] != "curl" {
		t.Errorf("loosening applied: %+v", p)
	}
	c := mustCompile(t, p)
	if _, denied := c.MatchOpen("/p/cert.pem", false); !denied {
		t.Error("untrusted allow_read cancelled *.pem")
	}

	want := []string{
		"/p/.aigate.yaml:1: mode: audit ignored",
		"/p/.aigate.yaml:2: backend: lsm ignored",
		"/p/.aigate.yaml:8: allow_read entry \"**/*.pem\" ignored",
		"/p/.aigate.yaml:9: allow_exec entry \"curl\" ignored",
		"/p/.aigate.yaml:10: net: allow ignored",
		"/p/.aigate.yaml:11: allow_net entry \"evil.example.com\" ignored",
		"/p/.aigate.yaml:13: allow_unix entry \"/var/run/docker.sock\" ignored",
		"/p/.aigate.yaml:14: dns settings ignored",
		"/p/.aigate.yaml:17: resource_limits.max_memory: 8G ignored",
	}
	var got []string
	for _, w := range warns {
		got = append(got, w.String())
	}
	if len(got) != len(want) {
		t.Fatalf("warnings:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("warning %q, want prefix %q", got[i], want[i])
		}
	}
	if w := warns[0].String(); !strings.HasSuffix(w, "it loosens the policy and this project file is not trusted (review it, then run `aigate trust`)") {
		t.Errorf("warning text %q", w)
	}
}

func TestMergeTrustedProject(t *testing.T) {
	g := mustParse(t, "~/.aigate/config.yaml", globalSrc)
	proj := mustParse(t, "/p/.aigate.yaml", projectSrc)
	p, warns := Merge(g, proj, true)
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	if got := patterns(p.DenyRead); !slices.Equal(got, []string{".env", "secrets/", "terraform.tfstate*"}) {
		t.Errorf("DenyRead = %v", got)
	}
	if len(p.DenyExec) != 0 || p.Mode != ModeAudit || p.Backend != BackendLSM || p.Net != NetAllow ||
		len(p.AllowNet) != 2 || len(p.AllowUnix) != 1 || p.DNS.MaxTTL == 0 || p.Loopback != LoopbackNone {
		t.Errorf("policy %+v", p)
	}
	if p.Limits != (ResourceLimits{MaxMemory: 8 << 30, MaxCPUPercent: 50, MaxPIDs: 100}) {
		t.Errorf("limits %+v", p.Limits)
	}
	if p.ModeSource.String() != "/p/.aigate.yaml:1" || p.NetSource.String() != "/p/.aigate.yaml:10" {
		t.Errorf("sources %v %v", p.ModeSource, p.NetSource)
	}
}

func TestMergeDefaultsAndDedupe(t *testing.T) {
	p, warns := Merge(nil, nil, false)
	if len(warns) != 0 || len(p.DenyRead) != len(defaultDenyRead) || p.Net != NetDeny || p.Loopback != LoopbackOwn ||
		p.Mode != ModeEnforce || p.NetSource.String() != "built-in" {
		t.Fatalf("defaults: %+v %v", p, warns)
	}
	// The same rule spelt differently is kept once, with the first Source.
	g := mustParse(t, "g", "deny_read: [secrets/, .env]\n")
	proj := mustParse(t, "p", "deny_read: ['**/secrets', .env/, x]\n")
	p, _ = Merge(g, proj, false)
	if got := patterns(p.DenyRead); !slices.Equal(got, []string{"secrets/", ".env", "x"}) || p.DenyRead[0].Source.String() != "g:1" {
		t.Errorf("DenyRead = %v", p.DenyRead)
	}
	// Settings the global file leaves out take the built-in defaults.
	if p.Net != NetDeny || p.Mode != ModeEnforce || p.Loopback != LoopbackOwn {
		t.Errorf("%+v", p)
	}
}

func TestMergeGlobalAllowAndUnmatched(t *testing.T) {
	g := mustParse(t, "g", "deny_read: [.env, '*.pem']\nallow_read: ['*.pem', id_rsa*]\n")
	proj := mustParse(t, "p", "allow_read: [.env/, secrets]\n")
	p, warns := Merge(g, proj, true)
	if got := patterns(p.DenyRead); len(got) != 0 {
		t.Errorf("DenyRead = %v", got)
	}
	var got []string
	for _, w := range warns {
		got = append(got, w.String())
	}
	want := []string{
		`g:2: allow_read entry "id_rsa*" cancels no deny_read entry; write it exactly as the deny entry it is meant to cancel`,
		`p:1: allow_read entry "secrets" cancels no deny_read entry; write it exactly as the deny entry it is meant to cancel`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s", strings.Join(got, "\n"))
	}
}

func TestMergeLimits(t *testing.T) {
	for _, tc := range []struct {
		global, project string
		trusted         bool
		want            uint32
	}{
		{"", "max_pids: 10", false, 10}, // a limit where there was none tightens
		{"max_pids: 10", "max_pids: 20", false, 10},
		{"max_pids: 10", "max_pids: 20", true, 20},
		{"max_pids: 10", "max_pids: 0", false, 10}, // removing loosens
		{"max_pids: 10", "max_pids: unlimited", true, 0},
		{"max_pids: 10", "max_pids: 5", false, 5},
		{"max_pids: 10", "max_memory: 1G", false, 10},
	} {
		g := mustParse(t, "g", "resource_limits:\n  "+tc.global+"\n")
		proj := mustParse(t, "p", "resource_limits:\n  "+tc.project+"\n")
		p, _ := Merge(g, proj, tc.trusted)
		if p.Limits.MaxPIDs != tc.want {
			t.Errorf("%q then %q (trusted %v): max_pids %d, want %d", tc.global, tc.project, tc.trusted, p.Limits.MaxPIDs, tc.want)
		}
	}
}

func TestMergeModeTightening(t *testing.T) {
	g := mustParse(t, "g", "mode: audit\nnet: allow\nallow_loopback: false\n")
	proj := mustParse(t, "p", "mode: enforce\nnet: deny\nallow_loopback: true\n")
	p, warns := Merge(g, proj, false)
	if p.Mode != ModeEnforce || p.Net != NetDeny || p.Loopback != LoopbackNone {
		t.Errorf("%+v", p)
	}
	// true is read as own, which loosens false: dropped, and the spelling
	// is pointed out.
	if len(warns) != 2 || !strings.HasPrefix(warns[0].String(), "p:3: allow_loopback: true now means allow_loopback: own") ||
		!strings.HasPrefix(warns[1].String(), "p:3: allow_loopback: own ignored") {
		t.Errorf("warnings %v", warns)
	}
}

// TestMergeWritable: a writable entry loosens the policy, so a project
// file's counts only when the project is trusted; the global file's always.
func TestMergeWritable(t *testing.T) {
	g := mustParse(t, "g", "writable: [~/.config/tool]\n")
	proj := mustParse(t, "p", "writable:\n  - ~/.config/git\n")
	p, warns := Merge(g, proj, false)
	if got := patterns(p.Writable); !slices.Equal(got, []string{"~/.config/tool"}) || len(warns) != 1 {
		t.Errorf("untrusted: writable %v, warnings %v", got, warns)
	}
	p, warns = Merge(g, proj, true)
	if got := patterns(p.Writable); !slices.Equal(got, []string{"~/.config/tool", "~/.config/git"}) || len(warns) != 0 {
		t.Errorf("trusted: writable %v, warnings %v", got, warns)
	}
}

// TestMergeLoopbackTrue: allow_loopback: true, the spelling of the files
// written before own existed, reads as own (the sandbox's own servers), not
// as every local service, and the warning says how to keep either meaning.
func TestMergeLoopbackTrue(t *testing.T) {
	g := mustParse(t, "g", "net: deny\nallow_loopback: true\n")
	p, warns := Merge(g, nil, false)
	if p.Loopback != LoopbackOwn {
		t.Errorf("loopback %q from %v", p.Loopback, p.LoopbackSource)
	}
	if len(warns) != 1 || warns[0].Source.String() != "g:2" ||
		!strings.Contains(warns[0].Msg, "allow_loopback: own") || !strings.Contains(warns[0].Msg, "allow_loopback: all") {
		t.Errorf("warnings %v", warns)
	}
	for _, tc := range []struct {
		global, project string
		trusted         bool
		want            LoopbackMode
	}{
		{"all", "", false, LoopbackAll},
		{"all", "own", false, LoopbackOwn},
		{"own", "all", false, LoopbackOwn},
		{"own", "all", true, LoopbackAll},
		{"false", "own", false, LoopbackNone},
		{"false", "own", true, LoopbackOwn},
	} {
		g := mustParse(t, "g", "allow_loopback: "+tc.global+"\n")
		var proj *Config
		if tc.project != "" {
			proj = mustParse(t, "p", "allow_loopback: "+tc.project+"\n")
		}
		if p, _ := Merge(g, proj, tc.trusted); p.Loopback != tc.want {
			t.Errorf("%s then %s (trusted %v): %q, want %q", tc.global, tc.project, tc.trusted, p.Loopback, tc.want)
		}
	}
}

// TestMergeInbound: allow_inbound loosens (a project needs trust for it),
// and false always applies.
func TestMergeInbound(t *testing.T) {
	for _, tc := range []struct {
		global, project string
		trusted         bool
		want            bool
	}{
		{"", "", false, false},
		{"allow_inbound: true\n", "", false, true},
		{"", "allow_inbound: true\n", false, false},
		{"", "allow_inbound: true\n", true, true},
		{"allow_inbound: true\n", "allow_inbound: false\n", false, false},
	} {
		g := mustParse(t, "g", "net: deny\n"+tc.global)
		var proj *Config
		if tc.project != "" {
			proj = mustParse(t, "p", tc.project)
		}
		p, _ := Merge(g, proj, tc.trusted)
		c := mustCompile(t, p)
		if p.Inbound != tc.want || c.Net.Inbound != tc.want {
			t.Errorf("%q then %q (trusted %v): %v, compiled %v, want %v", tc.global, tc.project, tc.trusted, p.Inbound, c.Net.Inbound, tc.want)
		}
	}
}

// TestMergeUsernsIOUring: allow_userns and allow_io_uring are off unless a
// file says true; true loosens (a project needs trust for it), false
// always applies, and each reaches the compiled policy on its own.
func TestMergeUsernsIOUring(t *testing.T) {
	for _, tc := range []struct {
		global, project string
		trusted         bool
		userns, ioUring bool
		warns           int
	}{
		{"", "", false, false, false, 0},
		{"allow_userns: true\n", "", false, true, false, 0},
		{"allow_io_uring: true\n", "", false, false, true, 0},
		{"", "allow_userns: true\nallow_io_uring: true\n", false, false, false, 2},
		{"", "allow_userns: true\nallow_io_uring: true\n", true, true, true, 0},
		{"allow_userns: true\nallow_io_uring: true\n", "allow_userns: false\n", false, false, true, 0},
	} {
		g := mustParse(t, "g", "net: deny\n"+tc.global)
		var proj *Config
		if tc.project != "" {
			proj = mustParse(t, "p", tc.project)
		}
		p, warns := Merge(g, proj, tc.trusted)
		c := mustCompile(t, p)
		if p.Userns != tc.userns || c.Userns != tc.userns || p.IOUring != tc.ioUring || c.IOUring != tc.ioUring {
			t.Errorf("%q then %q (trusted %v): userns %v/%v, io_uring %v/%v; want %v, %v",
				tc.global, tc.project, tc.trusted, p.Userns, c.Userns, p.IOUring, c.IOUring, tc.userns, tc.ioUring)
		}
		if len(warns) != tc.warns {
			t.Errorf("%q then %q (trusted %v): %d warnings, want %d: %v", tc.global, tc.project, tc.trusted, len(warns), tc.warns, warns)
		}
	}
	if _, err := Parse("c.yaml", []byte("allow_userns: yes please\n")); err == nil ||
		!strings.Contains(err.Error(), "c.yaml:1: allow_userns must be true or false") {
		t.Errorf("bad value: %v", err)
	}
}
