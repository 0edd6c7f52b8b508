package policy

import (
	"strings"
	"testing"
)

// An except_read entry in a project file loosens the policy: it needs trust.
func TestMergeExceptReadNeedsTrust(t *testing.T) {
	global := mustParse(t, "/home/u/.aigate/config.yaml", "deny_read:\n  - \"*.pem\"\n")
	project := mustParse(t, "/home/u/proj/.aigate.yaml", "except_read:\n  - vendor/\n")
	p, warns := Merge(global, project, false)
	if len(p.ExceptRead) != 0 || len(warns) != 1 || !strings.Contains(warns[0].String(), `.aigate.yaml:2: except_read entry "vendor/" ignored`) {
		t.Errorf("untrusted: except_read %v, warnings %v", patterns(p.ExceptRead), warns)
	}
	p, warns = Merge(global, project, true)
	c := mustCompile(t, p)
	if len(warns) != 0 || len(p.ExceptRead) != 1 {
		t.Fatalf("trusted: except_read %v, warnings %v", patterns(p.ExceptRead), warns)
	}
	if _, deny := c.MatchOpen("/home/u/proj/vendor/x/ca.pem", false); deny {
		t.Error("trusted except_read vendor/ leaves vendor/x/ca.pem denied")
	}
	if _, deny := c.MatchOpen("/home/u/proj/ca.pem", false); !deny {
		t.Error("ca.pem outside vendor/ is readable")
	}
}
