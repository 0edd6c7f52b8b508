//go:build linux

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/enforce"
)

// DefaultRecords is where an agent with a pinning backend keeps a record
// of each sandbox: /run is a tmpfs, gone at reboot with the pins and
// cgroups the records describe.
const DefaultRecords = "/run/aigate/sandboxes"

// recordVersion changes when a record's meaning does; a record of another
// version is not adopted (its sandbox is ended).
const recordVersion = 1

// record is what the agent keeps about a sandbox beyond what the kernel's
// pinned maps hold: who owns it and the sources of its policy, so that a
// restarted agent can recompile the same policy (for the rule texts of
// events and the network part) and serve it to its owner again. It holds
// the owner's config files: root-only, like the agent.
type record struct {
	V          int               `json:"v"`
	Name       string            `json:"name"`
	ID         uint32            `json:"id"`
	CgroupID   uint64            `json:"cgroup_id"`
	CgroupPath string            `json:"cgroup_path"`
	Owner      uint32            `json:"owner"`
	Created    time.Time         `json:"created"`
	Request    api.CreateRequest `json:"request"`
}

func (a *Agent) recordPath(name string) string {
	return filepath.Join(a.cfg.Records, name+".json")
}

// keepRecord writes b's record when the backend pins; end removes it.
// Without a record a sandbox outliving the agent is ended by the next one,
// so a failure is logged, not fatal.
func (a *Agent) keepRecord(b *box, req *api.CreateRequest) {
	if _, ok := a.be.(enforce.Pinner); !ok {
		return
	}
	r := record{
		V: recordVersion, Name: b.info.Name, ID: b.info.ID,
		CgroupID: b.sb.Info.CgroupID, CgroupPath: b.sb.Info.CgroupPath,
		Owner: b.info.Owner, Created: b.info.Created, Request: *req,
	}
	if err := writeRecord(a.recordPath(r.Name), &r); err != nil {
		a.log.Warn("sandbox record not written: if the agent dies, the next one ends this sandbox instead of adopting it",
			zap.String("sandbox", r.Name), zap.Error(err))
	}
}

// dropRecord removes b's record: it has ended (end calls it).
func (a *Agent) dropRecord(b *box) {
	if _, ok := a.be.(enforce.Pinner); !ok {
		return
	}
	if err := os.Remove(a.recordPath(b.info.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("remove sandbox record", zap.String("sandbox", b.info.Name), zap.Error(err))
	}
}

// writeRecord writes r to path atomically (a crash leaves the old file or
// the new one, never half of one), mode 0600, in a 0700 directory.
func writeRecord(path string, r *record) error {
	return writeJSON(path, "record", r)
}

// writeJSON writes v as JSON to path atomically (a temporary file in the
// same root-only directory, synced, renamed over path): a reader sees the
// old file or the new one whole, and a crash never leaves half of one.
// what names the file in errors.
// eachEnded hands each to the journals in dir (one NAME.json a sandbox)
// whose sandbox has ended, its cgroup gone: what the agent replays at its
// start for the sandboxes of a dead agent. load reads one; nil (unreadable,
// or of another version) drops it with a warning naming what. A journal
// whose cgroup still exists belongs to a live sandbox (adopted here, or
// another agent's) and is left to its end.
func eachEnded[J any](a *Agent, dir, what string, load func(name string) *J, cgroup func(*J) string, drop func(name string), each func(name string, j *J)) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		j := load(name)
		if j == nil {
			a.log.Warn(what+" unreadable or of another version: dropped, not replayed", zap.String("file", e.Name()))
			drop(name)
			continue
		}
		if _, err := os.Stat(cgroup(j)); err == nil {
			continue
		}
		each(name, j)
	}
}

func writeJSON(path, what string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", what, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s %s: %w", what, path, err)
	}
	return nil
}

// readRecords reads every record in dir by sandbox name. Unreadable or
// malformed files are reported in bad (and removed by the caller).
func readRecords(dir string) (recs map[string]*record, bad []string, err error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list sandbox records: %w", err)
	}
	recs = map[string]*record{}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				bad = append(bad, path) // a crash while writing
			}
			continue
		}
		data, err := os.ReadFile(path)
		var r record
		if err == nil {
			err = json.Unmarshal(data, &r)
		}
		if err != nil || r.V != recordVersion || r.Name != name {
			bad = append(bad, path)
			continue
		}
		recs[name] = &r
	}
	return recs, bad, nil
}
