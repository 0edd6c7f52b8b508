package backend

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/loader"
)

// Proving BPF LSM works takes a program load, an attach and, on a host that
// refuses it, two more trial loads to say why: about a third of an embedded
// `sudo aigate run` with `backend: auto` on such a host, paid on every run
// for an answer that cannot change before the next boot. A refusal the
// kernel cannot take back is remembered for the boot; a success never is
// (loading the real programs proves it again), and neither is a refusal
// that could pass (not root, a transient error).
//
// What cannot change within a boot: whether BPF LSM is compiled in, the
// active LSM list (the lsm= boot parameter), and root's EPERM on BPF LSM
// loads (lockdown only ever gets stricter; trampolines do not appear). The
// record names the boot (boot_id) and the aigate binary (device, inode,
// size, mtime): another boot, or another build whose probe may differ,
// probes again. Only a record that root alone could have written counts,
// so that no user can steer a root run onto the fanotify backend.

// probeCachePath is where the refusal is remembered: tmpfs, emptied at boot.
var probeCachePath = "/run/aigate/lsm-probe.json"

type probeRecord struct {
	Boot   string `json:"boot"`
	Binary string `json:"binary"`
	Reason string `json:"reason"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

var probeReasons = map[string]error{
	"not-compiled": loader.ErrLSMNotCompiled,
	"not-active":   loader.ErrLSMNotActive,
	"load-refused": loader.ErrLSMLoadRefused,
}

// rememberRefusal wraps probe (loader.ProbeLSM) with the record above.
func rememberRefusal(probe func() error) func() error {
	return func() error {
		if os.Geteuid() != 0 {
			return probe()
		}
		id := probeIdentity()
		if id.Boot == "" || id.Binary == "" {
			return probe()
		}
		if err := readRefusal(probeCachePath, id); err != nil {
			return err
		}
		err := probe()
		if rec, ok := lasting(err); ok {
			rec.Boot, rec.Binary = id.Boot, id.Binary
			writeRefusal(probeCachePath, rec) // best effort: the next run probes again
		}
		return err
	}
}

// RememberedLSMRefusal returns the refusal of BPF LSM that a root run of
// this aigate binary recorded this boot, or nil: all that doctor and
// status can know of it without root. Only a record root alone could
// have written counts.
func RememberedLSMRefusal() error {
	id := probeIdentity()
	if id.Boot == "" || id.Binary == "" {
		return nil
	}
	return readRefusal(probeCachePath, id)
}

// lasting returns the record of err when it is a refusal that holds until
// the next boot.
func lasting(err error) (probeRecord, bool) {
	var pe *loader.ProbeError
	if !errors.As(err, &pe) {
		return probeRecord{}, false
	}
	for name, reason := range probeReasons {
		if pe.Reason != reason {
			continue
		}
		if reason == loader.ErrLSMLoadRefused && !errors.Is(pe.Err, unix.EPERM) {
			return probeRecord{}, false // ENOMEM, a verifier limit: may pass next time
		}
		return probeRecord{Reason: name, Detail: pe.Detail, Fix: pe.Fix}, true
	}
	return probeRecord{}, false
}

// probeIdentity is this boot and this aigate binary.
func probeIdentity() probeRecord {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return probeRecord{}
	}
	exe, err := os.Executable()
	if err != nil {
		return probeRecord{}
	}
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		return probeRecord{}
	}
	b, _ := json.Marshal([]any{st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec})
	return probeRecord{Boot: strings.TrimSpace(string(boot)), Binary: string(b)}
}

// rootOnly reports whether path (not a symlink) and its directory are
// owned by root and writable by no one else.
func rootOnly(path string) bool {
	for _, p := range []string{path, filepath.Dir(path)} {
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Uid != 0 || st.Mode&0o022 != 0 || st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return false
		}
	}
	return true
}

// readRefusal returns the remembered refusal for id, or nil.
func readRefusal(path string, id probeRecord) error {
	if !rootOnly(path) {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var rec probeRecord
	if json.Unmarshal(data, &rec) != nil || rec.Boot != id.Boot || rec.Binary != id.Binary {
		return nil
	}
	reason, ok := probeReasons[rec.Reason]
	if !ok {
		return nil
	}
	return &loader.ProbeError{Reason: reason, Detail: rec.Detail + " (found earlier this boot; `sudo aigate doctor` probes again)", Fix: rec.Fix}
}

func writeRefusal(path string, rec probeRecord) {
	data, err := json.Marshal(rec)
	if err != nil {
		return
	}
	dir := filepath.Dir(path)
	if os.MkdirAll(dir, 0o755) != nil || !rootOnly(dir+"/.") {
		return
	}
	tmp, err := os.CreateTemp(dir, ".lsm-probe-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Chmod(tmp.Name(), 0o644) != nil || os.Rename(tmp.Name(), path) != nil {
		_ = os.Remove(tmp.Name())
	}
}
