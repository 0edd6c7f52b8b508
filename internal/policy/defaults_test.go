package policy

import (
	"slices"
	"testing"
)

// The file that `aigate init` writes must mean exactly the built-in defaults.
func TestDefaultYAMLParsesToDefaults(t *testing.T) {
	got, err := Parse("~/.aigate/config.yaml", DefaultYAML())
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	for _, l := range []struct {
		name      string
		got, want []PathRule
	}{
		{"deny_read", got.DenyRead, want.DenyRead},
		{"deny_write", got.DenyWrite, want.DenyWrite},
		{"deny_exec", got.DenyExec, want.DenyExec},
		{"allow_read", got.AllowRead, want.AllowRead},
		{"except_read", got.ExceptRead, want.ExceptRead},
		{"allow_unix", got.AllowUnix, want.AllowUnix},
		{"mask_output", got.MaskOutput, want.MaskOutput},
		{"deny_env", got.DenyEnv, want.DenyEnv},
		{"allow_env", got.AllowEnv, want.AllowEnv},
	} {
		if !slices.Equal(patterns(l.got), patterns(l.want)) {
			t.Errorf("%s: file has %v, Defaults() %v", l.name, patterns(l.got), patterns(l.want))
		}
	}
	var gotNet, wantNet []string
	for _, ep := range got.AllowNet {
		gotNet = append(gotNet, ep.String())
	}
	for _, ep := range want.AllowNet {
		wantNet = append(wantNet, ep.String())
	}
	if !slices.Equal(gotNet, wantNet) {
		t.Errorf("allow_net: file has %v, Defaults() %v", gotNet, wantNet)
	}
	if *got.Mode != *want.Mode || *got.Backend != *want.Backend || *got.Net != *want.Net ||
		*got.AllowLoopback != *want.AllowLoopback || got.ResourceLimits != nil || got.DNS != nil {
		t.Errorf("settings differ: file %+v", got)
	}
	// And the two merge and compile to the same rule sets.
	pf, _ := Merge(got, nil, false)
	pd, _ := Merge(nil, nil, false)
	cf, cd := mustCompile(t, pf), mustCompile(t, pd)
	if !equalSets(cf.Read, cd.Read) || !equalSets(cf.Write, cd.Write) || !equalSets(cf.Exec, cd.Exec) ||
		!slices.Equal(cf.Net.Domains, cd.Net.Domains) || cf.Net.DenyRule != cd.Net.DenyRule {
		t.Error("compiled file and defaults differ")
	}
}

// The issue fixes the default lists; keep them exactly.
func TestDefaultsContent(t *testing.T) {
	d := Defaults()
	if len(d.DenyRead) != 52 || len(d.DenyWrite) != 76 || len(d.DenyExec) != 11 || len(d.AllowNet) != 11 || *d.Net != NetDeny {
		t.Errorf("defaults: %d %d %d %d %v", len(d.DenyRead), len(d.DenyWrite), len(d.DenyExec), len(d.AllowNet), *d.Net)
	}
	for _, r := range d.DenyRead {
		if r.Source.String() != "built-in" {
			t.Errorf("%q has source %v", r.Pattern, r.Source)
		}
	}
}

// Claude Code refuses to start when its connectivity check cannot reach
// these (issue 13, measured with the 2.1.332 CLI: docs/presets.md).
func TestDefaultsLetClaudeCodeStart(t *testing.T) {
	p, _ := Merge(nil, nil, false)
	c := mustCompile(t, p)
	for _, name := range []string{"api.anthropic.com", "platform.claude.com", "downloads.claude.ai"} {
		if !slices.ContainsFunc(c.Net.Domains, func(d DomainEntry) bool { return d.Name == name && !d.Wildcard && d.Port == 0 }) {
			t.Errorf("the defaults do not allow %s", name)
		}
	}
}
