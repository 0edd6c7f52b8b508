//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestPolicyRecordsParsedOnce: reading a user's policy records again
// gives what parsing the file gives, whether the bytes are those parsed
// last (kept), changed by the agent or changed behind its back; and what
// a caller changes in the records it got does not leak into the next read.
func TestPolicyRecordsParsedOnce(t *testing.T) {
	testutil.RequireRoot(t) // the trust directory must be root's
	dir := filepath.Join(t.TempDir(), "trust")
	a := &Agent{cfg: Config{TrustDir: dir}}
	const uid = 4242
	first := policyRecord{Path: "/home/u/.aigate/config.yaml", SHA256: "aa", Accepted: time.Unix(1, 0).UTC(),
		Policy: policy.Summarize(mustMerge(t))}
	if err := a.writePolicies(uid, &policyRecords{Policies: []policyRecord{first}}); err != nil {
		t.Fatal(err)
	}
	read := func() *policyRecords {
		t.Helper()
		r, err := a.readPolicies(uid)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r1 := read()
	if len(r1.Policies) != 1 || r1.Policies[0].Path != first.Path {
		t.Fatalf("records = %+v, want the one written", r1.Policies)
	}
	// The callers' changes, not written, to the records parsed and to
	// those kept: the next reads must not see them.
	for i, r := range []*policyRecords{r1, read()} {
		r.set(policyRecord{Path: first.Path, SHA256: "changed-in-memory"})
		r.set(policyRecord{Path: "/other", SHA256: "bb"})
		if r2 := read(); len(r2.Policies) != 1 || r2.Policies[0].SHA256 != "aa" {
			t.Fatalf("after caller %d changed its copy: records = %v, want the file's", i, paths(r2))
		}
	}
	if _, ok := a.parsedPolicies[uid]; !ok {
		t.Fatal("nothing kept: the test proves nothing about reusing a parse")
	}

	// Changed behind the agent's back, in place (same inode).
	path := a.policyFile(uid)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	edited := append(append([]byte(nil), data...), []byte("  - path: /edited\n    sha256: cc\n    accepted: 2020-01-01T00:00:00Z\n")...)
	if _, err := f.Write(edited); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r3 := read()
	var want policyRecords
	if err := yaml.Unmarshal(edited, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r3, &want) || r3.find("/edited") == nil {
		t.Fatalf("after an edit in place: records = %v, want %v", paths(r3), paths(&want))
	}
}

func mustMerge(t *testing.T) *policy.Policy {
	t.Helper()
	p, _ := policy.Merge(policy.Defaults(), nil, false)
	return p
}

func paths(r *policyRecords) []string {
	var out []string
	for _, p := range r.Policies {
		out = append(out, p.Path+" "+p.SHA256)
	}
	return out
}
