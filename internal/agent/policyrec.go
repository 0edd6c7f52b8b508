//go:build linux

package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	yaml "go.yaml.in/yaml/v3"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/policy"
)

// The user's global config (~/.aigate/config.yaml) is the user's file: a
// sandbox that gets a write past the backend (fanotify cannot refuse a
// rename; a short mv may be missed) could loosen the user's next run, and
// so could anything else that edits it behind aigate's back. The agent
// therefore keeps, beside the trust records, a summary of the global
// policy each user last accepted, and refuses a sandbox whose global
// policy allows more (fail closed, saying what loosened). A change is
// accepted only from outside every sandbox: by the aigate command that
// made it (deny, allow, init, reset) or by `aigate policy accept`.
// Tightening is recorded silently; the first use records without asking.

// maxPolicyRecords bounds the records of one user (one per global config
// path); the oldest go first.
const maxPolicyRecords = 256

// policyRecords is the file of one uid's accepted policies.
type policyRecords struct {
	Policies []policyRecord `yaml:"policies"`
}

// policyRecord is the accepted policy of one global config file.
type policyRecord struct {
	Path     string         `yaml:"path"`
	SHA256   string         `yaml:"sha256,omitempty"` // of the file accepted; "" for no file
	Accepted time.Time      `yaml:"accepted"`
	Policy   policy.Summary `yaml:"policy"`
}

func (r *policyRecords) find(path string) *policyRecord {
	for i := range r.Policies {
		if r.Policies[i].Path == path {
			return &r.Policies[i]
		}
	}
	return nil
}

func (r *policyRecords) set(rec policyRecord) {
	if old := r.find(rec.Path); old != nil {
		*old = rec
		return
	}
	r.Policies = append(r.Policies, rec)
	if len(r.Policies) > maxPolicyRecords {
		slices.SortStableFunc(r.Policies, func(a, b policyRecord) int { return b.Accepted.Compare(a.Accepted) })
		r.Policies = r.Policies[:maxPolicyRecords]
	}
}

func (a *Agent) policyFile(uid uint32) string {
	return filepath.Join(a.cfg.TrustDir, strconv.FormatUint(uint64(uid), 10)+".policy.yaml")
}

// readPolicies reads uid's accepted policies; none is an empty set.
// Callers hold trustMu.
func (a *Agent) readPolicies(uid uint32) (*policyRecords, error) {
	if err := a.checkTrustDir(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(a.policyFile(uid))
	if errors.Is(err, fs.ErrNotExist) {
		return &policyRecords{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read policy records: %w", err)
	}
	if p, ok := a.parsedPolicies[uid]; ok && bytes.Equal(p.data, data) {
		return &policyRecords{Policies: slices.Clone(p.recs.Policies)}, nil
	}
	var r policyRecords
	if err := yaml.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("policy records %s are corrupt (%v): remove the file (as root), then run `aigate policy accept` outside any sandbox", a.policyFile(uid), err)
	}
	if a.parsedPolicies == nil {
		a.parsedPolicies = map[uint32]parsedPolicies{}
	}
	a.parsedPolicies[uid] = parsedPolicies{data: data, recs: policyRecords{Policies: slices.Clone(r.Policies)}}
	return &r, nil
}

// Parsing a user's policy records (a summary of every rule of each global
// policy) took a quarter of the agent's CPU for a sandbox around `true`,
// for a file that changes only when a policy is accepted. The agent still
// reads the file on every check but parses it only when its bytes differ
// from the last ones parsed: the same bytes give the same records, so what
// is decided does not change. Callers get their own slice of records
// (set replaces or appends whole records; no record's summary is changed
// in place), so a change they make reaches the cache only through the file.
type parsedPolicies struct {
	data []byte
	recs policyRecords
}

func (a *Agent) writePolicies(uid uint32, r *policyRecords) error {
	header := "# Accepted global policies of uid " + strconv.FormatUint(uint64(uid), 10) + ", kept by the aigate agent; change them with `aigate policy accept`.\n"
	if err := a.writeRecords(a.policyFile(uid), header, r); err != nil {
		return fmt.Errorf("write policy records: %w", err)
	}
	return nil
}

// lockRecords serialises the records' read-modify-write (policy and
// trust, one lock file) with other processes: embedded runs, root's
// `aigate policy accept` and `aigate trust` with no agent, and a service
// agent may share the directory, and a record lost to a concurrent write
// would let the next loosening pass as a first use, or undo a trust given
// or revoked. trustMu does the same within this process. The directory is checked
// (checkTrustDir) before anything is created in it.
func (a *Agent) lockRecords() (func(), error) {
	if err := a.checkTrustDir(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(a.cfg.TrustDir, 0o755); err != nil {
		return nil, fmt.Errorf("create the trust directory: %w", err)
	}
	lock := filepath.Join(a.cfg.TrustDir, ".policy.lock")
	f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the policy records: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock the policy records %s: %w", lock, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// globalPolicy is what a global config file (nil: none, the defaults)
// allows, and the path its record is kept under.
func globalPolicy(f *api.File, home string) (policy.Summary, string, string, error) {
	path := filepath.Join(home, config.DirName, config.GlobalName)
	var cfg *policy.Config
	sum := ""
	if f != nil {
		path, sum = f.Path, config.Hash(f.Data)
		var err error
		if cfg, err = policy.Parse(f.Path, f.Data); err != nil {
			return policy.Summary{}, "", "", err
		}
	}
	p, _ := policy.Merge(cfg, nil, true)
	return policy.Summarize(p), path, sum, nil
}

func sameSummary(a, b policy.Summary) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// prettyHome shortens path for messages: "~/..." below home.
func prettyHome(path, home string) string {
	if rel, ok := strings.CutPrefix(path, strings.TrimSuffix(home, "/")+"/"); ok && home != "" {
		return "~/" + rel
	}
	return path
}

// checkPolicy compares the global policy of a sandbox about to be created
// with the owner's accepted record: nothing recorded yet, or only tighter,
// is recorded; looser refuses the sandbox.
func (a *Agent) checkPolicy(owner uint32, req *api.CreateRequest) *api.Error {
	if a.cfg.TrustDir == "" {
		return nil
	}
	now, path, sum, err := globalPolicy(req.Global, req.Home)
	if err != nil {
		return &api.Error{Code: api.CodePolicy, Message: err.Error()}
	}
	a.trustMu.Lock()
	defer a.trustMu.Unlock()
	unlock, err := a.lockRecords()
	if err != nil {
		return &api.Error{Code: api.CodeInternal, Message: err.Error()}
	}
	defer unlock()
	recs, err := a.readPolicies(owner)
	if err != nil {
		return &api.Error{Code: api.CodeInternal, Message: err.Error()}
	}
	rec := recs.find(path)
	if rec != nil && sameSummary(rec.Policy, now) {
		return nil
	}
	if rec != nil {
		if loose := policy.Loosened(rec.Policy, now); len(loose) > 0 {
			a.log.Warn("sandbox refused: the global policy loosened without being accepted", zap.Uint32("owner", owner), zap.String("file", path), zap.Strings("loosened", loose))
			return &api.Error{Code: api.CodePolicy, Message: a.loosenedMessage(prettyHome(path, req.Home), req.Global == nil, rec.Accepted, loose)}
		}
	}
	recs.set(policyRecord{Path: path, SHA256: sum, Accepted: time.Now(), Policy: now})
	if err := a.writePolicies(owner, recs); err != nil {
		return &api.Error{Code: api.CodeInternal, Message: err.Error()}
	}
	return nil
}

// loosenedMessage says what loosened in file and what the user can do.
// Without a service agent the records are root's and nothing but root
// can change them: the command to accept is then run with sudo.
func (a *Agent) loosenedMessage(file string, missing bool, accepted time.Time, loose []string) string {
	what := file + " allows"
	if missing {
		what = file + " no longer exists, and the built-in defaults allow"
	}
	accept, status := "aigate policy accept", " (`aigate status` shows the rules in force)"
	if a.cfg.Embedded {
		accept, status = "sudo aigate policy accept", ""
	}
	return fmt.Sprintf("%s more than the policy you last accepted (on %s), and the change was not accepted from outside a sandbox:\n  %s\n"+
		"A sandboxed tool may have made it. If you made it yourself, review %s and run `%s` in a terminal outside any sandbox; "+
		"if not, undo it%s.",
		what, accepted.UTC().Format("2006-01-02 15:04 UTC"), strings.Join(loose, "\n  "), file, accept, status)
}

// policyRequest answers a policy request: check from anywhere, accept only
// from a process outside every sandbox.
func (a *Agent) policyRequest(p api.Peer, r *api.PolicyRequest) *api.Response {
	if a.cfg.TrustDir == "" {
		return &api.Response{OK: true, Policy: &api.PolicyState{Held: false}}
	}
	owner := p.UID
	if r.Owner != nil && *r.Owner != p.UID {
		if !p.Root() {
			return errResp(api.CodeForbidden, fmt.Sprintf("only root may accept another user's policy (you are uid %d)", p.UID))
		}
		owner = *r.Owner
	}
	if r.Action == api.PolicyAccept {
		if e := a.refuseInside(p, "the policy cannot be accepted from inside a sandbox: run `aigate policy accept` in a terminal outside `aigate run`"); e != nil {
			return &api.Response{Error: e}
		}
	}
	return a.answerPolicy(owner, r)
}

// AnswerPolicy answers r for owner from the records in dir as the agent
// would, for `sudo aigate policy accept` (and the commands that accept
// their own edits) when no agent runs: the records an embedded run
// compares with are root's, and the caller is root. The caller must have
// made sure it runs outside every sandbox (cmdutil.InsideSandbox): no
// agent is there to check.
func AnswerPolicy(dir string, owner uint32, r *api.PolicyRequest) *api.Response {
	a := &Agent{cfg: Config{TrustDir: dir, Embedded: true}, log: zap.NewNop()}
	return a.answerPolicy(owner, r)
}

// answerPolicy is policyRequest once the peer may make it.
func (a *Agent) answerPolicy(owner uint32, r *api.PolicyRequest) *api.Response {
	now, path, sum, err := globalPolicy(r.Global, r.Home)
	if err != nil {
		return errResp(api.CodePolicy, err.Error())
	}
	a.trustMu.Lock()
	defer a.trustMu.Unlock()
	if r.Action != api.PolicyCheck {
		// A check only reads (each write is a rename): it creates
		// nothing, so that `sudo aigate status` changes nothing.
		unlock, err := a.lockRecords()
		if err != nil {
			return errResp(api.CodeInternal, err.Error())
		}
		defer unlock()
	}
	recs, err := a.readPolicies(owner)
	if err != nil {
		return errResp(api.CodeInternal, err.Error())
	}
	st := &api.PolicyState{Held: true}
	if rec := recs.find(path); rec != nil {
		st.Recorded, st.Accepted = true, rec.Accepted
		st.Loosened = policy.Loosened(rec.Policy, now)
		if r.Action == api.PolicyAccept && r.Edit {
			// The command's own change is the user's; what the file
			// held before it is accepted only if it was.
			base, _, _, err := globalPolicy(r.Base, r.Home)
			if err != nil {
				return errResp(api.CodePolicy, err.Error())
			}
			if loose := policy.Loosened(rec.Policy, base); len(loose) > 0 {
				return errResp(api.CodePolicy, a.loosenedMessage(prettyHome(path, r.Home), r.Base == nil, rec.Accepted, loose))
			}
		}
	}
	if r.Action == api.PolicyCheck {
		return &api.Response{OK: true, Policy: st}
	}
	st.Accepted = time.Now()
	recs.set(policyRecord{Path: path, SHA256: sum, Accepted: st.Accepted, Policy: now})
	if err := a.writePolicies(owner, recs); err != nil {
		return errResp(api.CodeInternal, err.Error())
	}
	a.log.Info("policy accepted", zap.Uint32("owner", owner), zap.String("file", path), zap.Strings("loosened", st.Loosened))
	return &api.Response{OK: true, Policy: st}
}
