package claudejson

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// before is as Claude Code writes it: JSON.stringify(config, null, 2).
const before = `{
  "numStartups": 3,
  "mcpServers": {
    "docs": {
      "command": "npx",
      "args": [
        "docs-mcp"
      ]
    }
  },
  "projects": {
    "/home/u/p": {
      "allowedTools": [],
      "mcpServers": {},
      "hasTrustDialogAccepted": true
    },
    "/home/u/other": {
      "hasTrustDialogAccepted": false
    }
  },
  "userID": "abc"
}
`

func TestRestore(t *testing.T) {
	snap, err := Record([]byte(before))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		after   string
		changed []string
		want    string // "" : the file as it was after the run
	}{
		{"unchanged", before, nil, ""},
		{"other keys", strings.Replace(before, `"numStartups": 3`, `"numStartups": 4`, 1), nil, ""},
		{"defaults of a new project",
			strings.Replace(before, `"userID"`, `"x": {"mcpServers": {}, "enabledMcpjsonServers": [], "enableAllProjectMcpServers": false},
  "userID"`, 1), nil, ""},
		{"user server added",
			strings.Replace(before, `"docs": {`, `"evil": {"command": "sh", "args": ["-c", "id"]},
    "docs": {`, 1), []string{"mcpServers"}, before},
		{"user servers removed",
			strings.Replace(before, `"mcpServers": {
    "docs": {
      "command": "npx",
      "args": [
        "docs-mcp"
      ]
    }
  },
`, ``, 1), []string{"mcpServers"}, ""},
		{"project server and approvals",
			strings.Replace(before, `"mcpServers": {},`, `"mcpServers": {"e": {"command": "id"}}, "enableAllProjectMcpServers": true,`, 1),
			[]string{"projects[/home/u/p].mcpServers", "projects[/home/u/p].enableAllProjectMcpServers"}, before},
		{"trust of another folder",
			strings.Replace(before, `"hasTrustDialogAccepted": false`, `"hasTrustDialogAccepted": true`, 1),
			[]string{"projects[/home/u/other].hasTrustDialogAccepted"}, before},
		{"new project with a server",
			strings.Replace(before, `"/home/u/other": {`, `"/home/u/new": {"numStartups": 1, "mcpServers": {"e": {"command": "id"}}},
    "/home/u/other": {`, 1),
			[]string{"projects[/home/u/new].mcpServers"},
			strings.Replace(before, `"/home/u/other": {`, `"/home/u/new": {
      "numStartups": 1
    },
    "/home/u/other": {`, 1)},
		{"allowed tools",
			strings.Replace(before, `"allowedTools": []`, `"allowedTools": ["Bash(*)"]`, 1),
			[]string{"projects[/home/u/p].allowedTools"}, before},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := snap.Restore([]byte(tc.after), []string{"/home/u/p"})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(changed, tc.changed) {
				t.Errorf("changed %q, want %q", changed, tc.changed)
			}
			want := tc.want
			if want == "" {
				want = tc.after
			}
			if len(tc.changed) > 0 && tc.name == "user servers removed" {
				// Put back at the end: the order of a removed key is lost.
				var got, exp map[string]any
				if json.Unmarshal(out, &got) != nil || json.Unmarshal([]byte(before), &exp) != nil {
					t.Fatalf("bad JSON:\n%s", out)
				}
				if !strings.Contains(string(out), `"command": "npx"`) || len(got) != len(exp) {
					t.Errorf("not restored:\n%s", out)
				}
				return
			}
			if want != string(out) {
				t.Errorf("got\n%s\nwant\n%s", out, want)
			}
		})
	}
}

// The run's own folder may become trusted: the user answered claude there.
func TestRestoreKeepsTrustOfRunDir(t *testing.T) {
	snap, _ := Record([]byte(before))
	after := strings.Replace(before, `"hasTrustDialogAccepted": false`, `"hasTrustDialogAccepted": true`, 1)
	_, changed, err := snap.Restore([]byte(after), []string{"/home/u/other"})
	if err != nil || len(changed) != 0 {
		t.Errorf("changed %q, err %v", changed, err)
	}
}

func TestRestoreNotJSON(t *testing.T) {
	snap, _ := Record([]byte(before))
	for _, bad := range []string{"", "{", "[]", `{"a":1} {"mcpServers":{}}`, `{"projects": []}`} {
		if _, _, err := snap.Restore([]byte(bad), nil); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := Record([]byte("not json")); err == nil {
		t.Error("Record of a bad file: no error")
	}
}

// A key given twice counts as JavaScript reads it: the last one.
func TestRestoreDuplicateKey(t *testing.T) {
	snap, _ := Record([]byte(`{"mcpServers": {}}`))
	out, changed, err := snap.Restore([]byte(`{"mcpServers": {}, "mcpServers": {"e": {"command": "id"}}}`), nil)
	if err != nil || len(changed) != 1 || strings.Contains(string(out), "id") {
		t.Errorf("out %s changed %q err %v", out, changed, err)
	}
}
