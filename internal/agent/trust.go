//go:build linux

package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"
	yaml "go.yaml.in/yaml/v3"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/config"
)

// DefaultTrustDir is where the agent installed by `aigate setup` keeps the
// users' trust records: root's, out of every sandbox's reach (a sandboxed
// tool runs as its user and can at best write what the user can).
const DefaultTrustDir = "/var/lib/aigate/trust"

// trustFile is the record file of uid.
func (a *Agent) trustFile(uid uint32) string {
	return filepath.Join(a.cfg.TrustDir, strconv.FormatUint(uint64(uid), 10)+".yaml")
}

// checkTrustDir refuses records in a directory that someone but root
// could change: what it holds would not be the user's decision. A
// symlink is refused too: whoever owns the directory it sits in could
// point it elsewhere between two runs.
func (a *Agent) checkTrustDir() error {
	fi, err := os.Lstat(a.cfg.TrustDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // created by writeTrust, root's and 0755
	}
	if err != nil {
		return fmt.Errorf("trust directory: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("trust directory %s is a symbolic link: make it a directory only root can write (as root: replace the link by the directory it points to), then run `aigate trust` again in each project", a.cfg.TrustDir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("trust directory %s is not a directory only root can write (uid 0, not group or world writable): fix it as root (chown root; chmod 755), then run `aigate trust` again in each project", a.cfg.TrustDir)
	}
	return nil
}

// readTrust reads uid's records; none is an empty store.
func (a *Agent) readTrust(uid uint32) (*config.TrustStore, error) {
	if err := a.checkTrustDir(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(a.trustFile(uid))
	if errors.Is(err, fs.ErrNotExist) {
		return &config.TrustStore{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read trust records: %w", err)
	}
	var ts config.TrustStore
	if err := yaml.Unmarshal(data, &ts); err != nil {
		return nil, fmt.Errorf("trust records %s are corrupt (%v): remove the file (as root) and run `aigate trust` again in each project", a.trustFile(uid), err)
	}
	return &ts, nil
}

// writeTrust replaces uid's records atomically.
func (a *Agent) writeTrust(uid uint32, ts *config.TrustStore) error {
	header := "# Trust records of uid " + strconv.FormatUint(uint64(uid), 10) + ", kept by the aigate agent; change them with `aigate trust`.\n"
	if err := a.writeRecords(a.trustFile(uid), header, ts); err != nil {
		return fmt.Errorf("write trust records: %w", err)
	}
	return nil
}

// writeRecords replaces dst, a file in the trust directory, with header
// and v in YAML, atomically: a temporary file in the same root-owned
// directory, synced, renamed over the old one.
func (a *Agent) writeRecords(dst, header string, v any) error {
	if err := os.MkdirAll(a.cfg.TrustDir, 0o755); err != nil {
		return fmt.Errorf("create the trust directory: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	tmp, err := os.CreateTemp(a.cfg.TrustDir, ".records-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing is there
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// trustRequest answers a trust request. Reading is the peer's own records
// (from anywhere, like status); changing them is refused to a peer inside
// any sandbox: a sandboxed tool must not trust its own next run.
func (a *Agent) trustRequest(p api.Peer, t *api.TrustRequest) *api.Response {
	if a.cfg.TrustDir == "" {
		return &api.Response{OK: true, Trust: &api.TrustRecords{Held: false}}
	}
	owner := p.UID
	if t.Owner != nil && *t.Owner != p.UID {
		if !p.Root() {
			return errResp(api.CodeForbidden, fmt.Sprintf("only root may change another user's trust (you are uid %d)", p.UID))
		}
		owner = *t.Owner
	}
	if t.Action != api.TrustGet {
		if e := a.refuseInside(p, "trust cannot be changed from inside a sandbox: run `aigate trust` in a terminal outside `aigate run`"); e != nil {
			return &api.Response{Error: e}
		}
	}
	return a.answerTrust(owner, t)
}

// AnswerTrust answers t for owner from the trust records in dir as the
// agent would, when no agent runs: the project trust an embedded `sudo
// aigate run` applies is kept there. Reading needs no privilege (the
// records are 0644); a change needs root, and the caller must have made
// sure it runs outside every sandbox (cmdutil.CheckOutside): no agent is
// there to check.
func AnswerTrust(dir string, owner uint32, t *api.TrustRequest) *api.Response {
	a := &Agent{cfg: Config{TrustDir: dir, Embedded: true}, log: zap.NewNop()}
	return a.answerTrust(owner, t)
}

// answerTrust is trustRequest once the peer may make it. A change is
// read-modify-written under the records' lock file: embedded runs, root's
// `aigate trust` with no agent and a service agent may share the
// directory, and a change lost to a concurrent write would be a trust the
// user gave, or revoked, silently undone.
func (a *Agent) answerTrust(owner uint32, t *api.TrustRequest) *api.Response {
	a.trustMu.Lock()
	defer a.trustMu.Unlock()
	if t.Action != api.TrustGet {
		unlock, err := a.lockRecords()
		if err != nil {
			return errResp(api.CodeInternal, err.Error())
		}
		defer unlock()
	}
	ts, err := a.readTrust(owner)
	if err != nil {
		return errResp(api.CodeInternal, err.Error())
	}
	switch t.Action {
	case api.TrustSet:
		ts.SetHash(t.Path, t.SHA256, time.Now())
	case api.TrustRevoke:
		ts.Remove(t.Path)
	}
	if t.Action != api.TrustGet {
		if err := a.writeTrust(owner, ts); err != nil {
			return errResp(api.CodeInternal, err.Error())
		}
		a.log.Info("trust changed", zap.Uint32("owner", owner), zap.String("action", t.Action), zap.String("path", t.Path))
	}
	out := &api.TrustRecords{Held: true}
	for _, e := range ts.Entries {
		out.Entries = append(out.Entries, api.TrustEntry{Path: e.Path, SHA256: e.SHA256, Trusted: e.Trusted})
	}
	return &api.Response{OK: true, Trust: out}
}

// projectTrust is the trust state of the request's project file in the
// owner's records, when the agent keeps them (a service agent, and the
// agent an embedded run starts, alike); without records the client's
// decision stands.
func (a *Agent) projectTrust(owner uint32, req *api.CreateRequest) (string, *api.Error) {
	if a.cfg.TrustDir == "" || req.Project == nil {
		return req.Trust, nil
	}
	a.trustMu.Lock()
	ts, err := a.readTrust(owner)
	a.trustMu.Unlock()
	if err != nil {
		return "", &api.Error{Code: api.CodeInternal, Message: err.Error()}
	}
	switch ts.State(req.Project.Path, req.Project.Data) {
	case config.Trusted:
		return "trusted", nil
	case config.Changed:
		return "changed", nil
	}
	return "untrusted", nil
}
