package doctor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/darwin"
)

// fakeMac answers commands by the start of their shell line.
type fakeMac map[string]string

func (f fakeMac) Run(_ context.Context, name string, args []string, _ []byte) ([]byte, error) {
	line := darwin.Command{Name: name, Args: args}.String()
	for prefix, out := range f {
		if strings.HasPrefix(line, prefix) {
			if strings.Contains(out, "eDSRecordNotFound") {
				return []byte(out), errors.New("exit status 56")
			}
			return []byte(out), nil
		}
	}
	return nil, nil
}

const (
	stockConf = "anchor \"com.apple/*\"\nload anchor \"com.apple\" from \"/etc/pf.anchors/com.apple\"\n"
	userRec   = "NFSHomeDirectory: /var/db/aigate/home\nPrimaryGroupID: 499\nUniqueID: 499\n"
)

func macMachine(t *testing.T) darwin.Machine {
	dir := t.TempDir()
	m := darwin.Machine{Dir: filepath.Join(dir, "aigate"), PFConf: filepath.Join(dir, "pf.conf"), UserName: darwin.DefaultUserName, Home: darwin.DefaultHome}
	if err := os.WriteFile(m.PFConf, []byte(stockConf), 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

func statusOf(r *Report) map[string]Status {
	m := map[string]Status{}
	for _, c := range r.Checks {
		m[c.Name] = c.Status
	}
	return m
}

func TestDarwinReport(t *testing.T) {
	ctx := context.Background()
	m := macMachine(t)

	// Before setup: no record, no user, no anchor.
	bare := fakeMac{"dscl . -read": "<dscl_cmd> DS Error: -14136 (eDSRecordNotFound)", "pfctl -s info": "Status: Disabled\n"}
	r := darwinReport(ctx, bare, m, 0, os.ReadFile)
	st := statusOf(r)
	if r.Ready || st["sandbox user record"] != Fail || st["sandbox user _aigate"] != Fail || st["pf anchor com.aigate"] != Fail || st["pf.conf anchor line"] != Warn {
		t.Fatalf("before setup: %+v", r)
	}
	for _, c := range r.Checks {
		if c.Status == Fail && !strings.Contains(c.Fix, "aigate setup") {
			t.Errorf("%s fails without the setup fix: %+v", c.Name, c)
		}
	}

	if _, err := darwin.Setup(ctx, fakeMac{"dscl . -read": userRec}, m); err != nil {
		t.Fatal(err)
	}
	ready := fakeMac{"dscl . -read": userRec, "pfctl -s info": "Status: Disabled for 0 days\n", "pfctl -s rules": "anchor \"com.apple/*\" all\nanchor \"com.aigate\" all\n"}
	r = darwinReport(ctx, ready, m, 0, os.ReadFile)
	if !r.Ready || r.Failed() || r.Backend != BackendDarwin {
		t.Fatalf("after setup: %+v", r)
	}
	if st := statusOf(r); st["pf enabled"] != OK || st["pf.conf anchor line"] != OK {
		t.Errorf("after setup: %+v", r.Checks)
	}
	// Rules loaded by an older setup, anchor last: a warning, not a failure.
	if st := statusOf(r); st["pf anchor com.aigate first"] != Warn {
		t.Errorf("anchor after com.apple/*: %+v", r.Checks)
	}

	// Without root pf is not read: skipped, and the summary says how.
	r = darwinReport(ctx, ready, m, 501, os.ReadFile)
	if st := statusOf(r); !r.Ready || st["pf enabled"] != Skip || st["privileges"] != Warn || !strings.Contains(r.Summary, "sudo aigate doctor") {
		t.Errorf("as a user: %+v", r)
	}

	// The account's ids no longer match the record (recreated by hand).
	moved := fakeMac{"dscl . -read": "PrimaryGroupID: 450\nUniqueID: 450\n", "pfctl -s rules": "anchor \"com.aigate\" all\n"}
	if r := darwinReport(ctx, moved, m, 0, os.ReadFile); r.Ready || statusOf(r)["sandbox user _aigate"] != Fail {
		t.Errorf("ids differ: %+v", r)
	}
}
