package events

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		e    Event
		want string
	}{
		{"read", Event{Kind: KindFile, Op: OpRead, Path: "/home/u/proj/.env", Comm: "cat", PID: 4243, TGID: 4242, Rule: 3, RuleText: ".env"},
			"blocked read /home/u/proj/.env (cat, pid 4242, rule .env)"},
		{"write", Event{Kind: KindFile, Op: OpWrite, Path: "/etc/hosts", Comm: "vim", TGID: 9, RuleText: "/etc"},
			"blocked write /etc/hosts (vim, pid 9, rule /etc)"},
		{"exec", Event{Kind: KindExec, Op: OpExec, Path: "/usr/bin/curl", Comm: "sh", TGID: 10, RuleText: "curl"},
			"blocked exec /usr/bin/curl (sh, pid 10, rule curl)"},
		{"connect with domain", Event{Kind: KindNet, Op: OpConnect, Addr: netip.MustParseAddrPort("1.2.3.4:443"), Domain: "example.com", Comm: "curl", TGID: 11, RuleText: "net: deny"},
			"blocked connect 1.2.3.4:443 (example.com) (curl, pid 11, rule net: deny)"},
		{"connect v6", Event{Kind: KindNet, Op: OpConnect, Addr: netip.MustParseAddrPort("[2001:db8::1]:80"), Comm: "curl", TGID: 11},
			"blocked connect [2001:db8::1]:80 (curl, pid 11)"},
		{"dns", Event{Kind: KindNet, Op: OpDNS, Domain: "evil.example", Comm: "node", TGID: 12, Rule: 7},
			"blocked dns evil.example (node, pid 12, rule #7)"},
		{"rename seen after the fact", Event{Kind: KindFile, Op: OpRename, Path: "/p/.git", Comm: "mv", TGID: 3, RuleText: ".git/hooks/"},
			"detected rename /p/.git (mv, pid 3, rule .git/hooks/): not undone, the sandbox was killed"},
		{"rename undone", Event{Kind: KindFile, Op: OpRename, Path: "/p/.git/config", Comm: "git", TGID: 3, RuleText: ".git/config", Restored: true},
			"detected rename /p/.git/config (git, pid 3, rule .git/config): undone, the file was restored"},
		{"delete seen after the fact", Event{Kind: KindFile, Op: OpDelete, Path: "/p/.git", Comm: "rm", TGID: 3, RuleText: ".git/hooks/"},
			"detected delete /p/.git (rm, pid 3, rule .git/hooks/): not undone, the sandbox was killed"},
		{"delete undone", Event{Kind: KindFile, Op: OpDelete, Path: "/p/.git/hooks/pre-commit", Comm: "rm", TGID: 3, RuleText: ".git/hooks/", Restored: true},
			"detected delete /p/.git/hooks/pre-commit (rm, pid 3, rule .git/hooks/): undone, the file was restored"},
		{"truncate seen after the fact", Event{Kind: KindFile, Op: OpTruncate, Path: "/p/.git/config", Comm: "truncate", TGID: 3, RuleText: ".git/config"},
			"detected truncate /p/.git/config (truncate, pid 3, rule .git/config): not undone, the sandbox was killed"},
		{"truncate undone", Event{Kind: KindFile, Op: OpTruncate, Path: "/p/.git/config", Comm: "python3", TGID: 3, RuleText: ".git/config", Restored: true},
			"detected truncate /p/.git/config (python3, pid 3, rule .git/config): undone, the file was restored and the sandbox killed"},
		{"planted, moved aside", Event{Kind: KindFile, Op: OpPlanted, Path: "/p/.git/hooks/post-commit", RuleText: ".git/hooks/", MovedTo: "/p/.aigate-quarantine/t-s1/001-post-commit"},
			"detected planted /p/.git/hooks/post-commit (rule .git/hooks/): moved aside to /p/.aigate-quarantine/t-s1/001-post-commit, the sandbox was killed"},
		{"planted, not moved", Event{Kind: KindFile, Op: OpPlanted, Path: "/p/.git/config", RuleText: ".git/config"},
			"detected planted /p/.git/config (rule .git/config): could not be moved aside (see the agent's log), the sandbox was killed"},
		{"rename found by a rescan", Event{Kind: KindFile, Op: OpRename, Path: "/p/.git/config", RuleText: ".git/config", Restored: true, Rescan: true},
			"detected rename /p/.git/config (rule .git/config, found by a rescan after a watcher queue overflow, process unknown): undone, the file was restored"},
		{"socket received from outside", Event{Kind: KindNet, Op: OpReceive, Path: "socket from outside the sandbox", Addr: netip.MustParseAddrPort("127.0.0.1:8080"), Comm: "nettool", TGID: 4},
			"blocked receive 127.0.0.1:8080 (nettool, pid 4): the receiving process was killed"},
		{"socket received in audit mode", Event{Kind: KindNet, Op: OpReceive, Path: "socket from outside the sandbox", Comm: "nettool", TGID: 4, Audit: true},
			"would block receive socket from outside the sandbox (nettool, pid 4)"},
		{"rename in audit mode", Event{Kind: KindFile, Op: OpRename, Path: "/p/.git", Comm: "mv", TGID: 3, RuleText: ".git/hooks/", Audit: true},
			"would block rename /p/.git (mv, pid 3, rule .git/hooks/)"},
		{"audit", Event{Kind: KindFile, Op: OpRead, Path: "/p/.env", Comm: "cat", TGID: 1, RuleText: ".env", Audit: true},
			"would block read /p/.env (cat, pid 1, rule .env)"},
		{"thread id only", Event{Op: OpRead, Path: "/x", PID: 5},
			"blocked read /x (pid 5)"},
		{"nothing known", Event{Op: OpRead},
			"blocked read"},
		{"newline in path is quoted", Event{Op: OpRead, Path: "/p/a\naigate: blocked nothing", Comm: "cat", TGID: 1},
			`blocked read "/p/a\naigate: blocked nothing" (cat, pid 1)`},
		{"escape in comm is quoted", Event{Op: OpRead, Path: "/p/x", Comm: "\x1b[2Jx", TGID: 1},
			`blocked read /p/x ("\x1b[2Jx", pid 1)`},
		{"invalid utf8 is quoted", Event{Op: OpRead, Path: "/p/\xff", TGID: 1},
			`blocked read "/p/\xff" (pid 1)`},
		{"trailing space is quoted", Event{Op: OpRead, Path: "/p/x ", TGID: 1},
			`blocked read "/p/x " (pid 1)`},
		{"unicode kept", Event{Op: OpRead, Path: "/p/café", TGID: 1},
			"blocked read /p/café (pid 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Format(tt.e); got != tt.want {
				t.Fatalf("Format =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestFormatColor(t *testing.T) {
	e := Event{Op: OpRead, Path: "/p/.env", Comm: "cat", TGID: 1}
	got := Style{Color: true}.Line(e)
	want := "\x1b[1;31mblocked\x1b[0m read /p/.env \x1b[2m(cat, pid 1)\x1b[0m"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	e.Audit = true
	if got := (Style{Color: true}).Line(e); !strings.HasPrefix(got, ansiYellow+"would block"+ansiReset) {
		t.Fatalf("audit line %q is not yellow", got)
	}
}

func TestJSONWriter(t *testing.T) {
	var buf bytes.Buffer
	w := NewJSONWriter(&buf)
	ts := time.Date(2026, 11, 28, 12, 0, 0, 5, time.UTC)
	in := []Event{
		{Time: ts, Sandbox: "s1-p9", CgroupID: 77, PID: 2, TGID: 1, UID: 1000, Comm: "cat", Kind: KindFile, Op: OpRead, Path: "/p/.env", Rule: 3, RuleText: ".env", Backend: "fanotify"},
		{Time: ts, Kind: KindNet, Op: OpConnect, Addr: netip.MustParseAddrPort("[::1]:8080"), Audit: true},
	}
	for _, e := range in {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	// The documented schema: field names and encodings are an interface.
	wantFirst := `{"time":"2026-11-28T12:00:00.000000005Z","sandbox":"s1-p9","cgroup_id":77,"pid":2,"tgid":1,"uid":1000,"comm":"cat","kind":"file","op":"read","path":"/p/.env","rule_id":3,"rule":".env","backend":"fanotify"}`
	if lines[0] != wantFirst {
		t.Fatalf("line 1 =\n%s\nwant\n%s", lines[0], wantFirst)
	}
	for i, l := range lines {
		var got Event
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if got != in[i] {
			t.Fatalf("line %d round trip: got %+v, want %+v", i, got, in[i])
		}
	}
	if strings.Contains(lines[1], `"path"`) || !strings.Contains(lines[1], `"addr":"[::1]:8080"`) {
		t.Fatalf("net event encoding: %s", lines[1])
	}
}

func TestSummary(t *testing.T) {
	var s Summary
	if s.String() != "" || s.Total() != 0 {
		t.Fatalf("empty summary = %q", s.String())
	}
	s.Add(Event{Op: OpExec})
	if got, want := s.String(), "1 operation blocked (1 exec)"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	s.Add(Event{Op: OpRead})
	s.Add(Event{Op: OpRead})
	if got, want := s.String(), "3 operations blocked (2 read, 1 exec)"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	s.AddCount(OpConnect, true, 4)
	s.AddCount(Op("future"), false, 1)
	want := "4 operations blocked (2 read, 1 exec, 1 future)\n4 operations would have been blocked (audit mode) (4 connect)"
	if got := s.String(); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if s.Total() != 8 {
		t.Fatalf("Total = %d", s.Total())
	}
	var r Summary
	r.Add(Event{Op: OpRename})
	if got, want := r.String(), "1 operation blocked (1 rename detected after the fact)"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	r.Add(Event{Op: OpRename, Restored: true})
	if got, want := r.String(), "2 operations blocked (1 rename undone (file restored), 1 rename detected after the fact)"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	r.Add(Event{Op: OpDelete, Restored: true})
	if got, want := r.String(), "3 operations blocked (1 rename undone (file restored), 1 rename detected after the fact, 1 delete undone (file restored))"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
