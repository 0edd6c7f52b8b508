package backend

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// countingProbe returns err and counts its calls.
func countingProbe(err error) (func() error, *int) {
	n := 0
	return func() error { n++; return err }, &n
}

func withProbeCache(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "run")
	old := probeCachePath
	probeCachePath = filepath.Join(dir, "lsm-probe.json")
	t.Cleanup(func() { probeCachePath = old })
	return probeCachePath
}

var refusedEPERM = &loader.ProbeError{Reason: loader.ErrLSMLoadRefused, Detail: "BPF_PROG_LOAD returned EPERM", Fix: "nothing needs doing", Err: unix.EPERM}

// A refusal that lasts until the next boot is probed once; the answer
// keeps its reason and fix.
func TestProbeRefusalRemembered(t *testing.T) {
	withProbeCache(t)
	if err := RememberedLSMRefusal(); err != nil {
		t.Fatalf("remembered before any probe: %v", err)
	}
	probe, calls := countingProbe(refusedEPERM)
	cached := rememberRefusal(probe)
	for i := 0; i < 3; i++ {
		err := cached()
		var pe *loader.ProbeError
		if !errors.As(err, &pe) || !errors.Is(err, loader.ErrLSMLoadRefused) || pe.Fix != refusedEPERM.Fix {
			t.Fatalf("call %d: %v, want the remembered refusal", i, err)
		}
	}
	if *calls != 1 {
		t.Fatalf("probed %d times, want 1", *calls)
	}
	// What doctor and status read without root.
	if err := RememberedLSMRefusal(); !errors.Is(err, loader.ErrLSMLoadRefused) {
		t.Fatalf("RememberedLSMRefusal: %v, want the recorded refusal", err)
	}
}

// What may pass next time is probed every time: a success, a refusal for
// want of memory, an error that is no ProbeError.
func TestProbeNotRemembered(t *testing.T) {
	for name, err := range map[string]error{
		"success":   nil,
		"transient": &loader.ProbeError{Reason: loader.ErrLSMLoadRefused, Err: unix.ENOMEM},
		"other":     errors.New("probe BPF LSM: read hits: EIO"),
	} {
		withProbeCache(t)
		probe, calls := countingProbe(err)
		cached := rememberRefusal(probe)
		cached()
		cached()
		if *calls != 2 {
			t.Errorf("%s: probed %d times, want 2", name, *calls)
		}
	}
}

// A record of another boot, or one that someone other than root could
// have written, is not believed.
func TestProbeRecordNotBelieved(t *testing.T) {
	path := withProbeCache(t)
	probe, calls := countingProbe(refusedEPERM)
	rememberRefusal(probe)() // writes the record
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no record written: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec probeRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}

	rec.Boot = "another-boot"
	other, _ := json.Marshal(rec)
	if err := os.WriteFile(path, other, 0o644); err != nil {
		t.Fatal(err)
	}
	rememberRefusal(probe)()
	if *calls != 2 {
		t.Fatalf("a record of another boot was believed (%d probes)", *calls)
	}

	if err := os.WriteFile(path, data, 0o644); err != nil { // this boot again
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	rememberRefusal(probe)()
	if *calls != 3 {
		t.Fatalf("a world-writable record was believed (%d probes)", *calls)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	rememberRefusal(probe)()
	if *calls != 4 {
		t.Fatalf("a record owned by another user was believed (%d probes)", *calls)
	}
}
