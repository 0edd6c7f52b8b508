package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/cmdutil"
)

// dynmodsMark records that `aigate setup --favordynmods` turned the cgroup
// v2 option on: the agent sets it again at start (a reboot clears a
// remount), and reset turns it off again only when setup was what set it.
var dynmodsMark = filepath.Join(stateDir, "favordynmods")

// The kernel side, replaced in tests: the option is machine-wide.
var (
	readDynmods = cgroup.ReadFavorDynmods
	setDynmods  = cgroup.SetFavorDynmods
)

// dynmodsCost is what setup and doctor say the option costs and gives.
const dynmodsCost = "moving a run into its sandbox no longer waits for an RCU grace period (5-16 ms of each `aigate run` through the agent); every fork, thread start and exit on the machine pays a little more (docs/performance.md)"

// setupFavorDynmods turns favordynmods on and records that setup did, or,
// with on false, undoes what an earlier setup did.
func setupFavorDynmods(f *cmdutil.Factory, on bool) error {
	if !on {
		return undoFavorDynmods(f)
	}
	s, err := readDynmods()
	if err != nil {
		return fmt.Errorf("favordynmods: %w", err)
	}
	_, markErr := os.Stat(dynmodsMark)
	switch {
	case s.On && markErr != nil:
		f.Printf("favordynmods is already on (cgroup v2 at %s), set by someone else: left as it is, and reset will not clear it\n", s.Mountpoint)
		return nil
	case s.On:
		f.Printf("favordynmods is on (cgroup v2 at %s), as an earlier aigate setup set it; undo: sudo aigate setup --favordynmods=false\n", s.Mountpoint)
		return nil
	}
	if err := setDynmods(true); err != nil {
		return fmt.Errorf("favordynmods: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dynmodsMark), 0o755); err != nil {
		return fmt.Errorf("favordynmods: %w", err)
	}
	mark := fmt.Sprintf("set by aigate setup at %s on cgroup v2 at %s; the agent sets it again at start; sudo aigate setup --favordynmods=false or sudo aigate reset --force clears it\n", time.Now().UTC().Format(time.RFC3339), s.Mountpoint)
	if err := os.WriteFile(dynmodsMark, []byte(mark), 0o644); err != nil {
		return fmt.Errorf("favordynmods: record it: %w", err)
	}
	f.Printf("turned favordynmods on (cgroup v2 at %s): %s; the agent sets it again after a reboot; undo: sudo aigate setup --favordynmods=false\n", s.Mountpoint, dynmodsCost)
	return nil
}

// undoFavorDynmods turns favordynmods off if setup turned it on.
func undoFavorDynmods(f *cmdutil.Factory) error {
	if _, err := os.Stat(dynmodsMark); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := setDynmods(false); err != nil {
		return fmt.Errorf("favordynmods: %w", err)
	}
	if err := os.Remove(dynmodsMark); err != nil {
		return fmt.Errorf("favordynmods: %w", err)
	}
	f.Printf("turned favordynmods off again (aigate setup had turned it on)\n")
	return nil
}

// agentFavorDynmods sets favordynmods again at the agent's start when
// setup asked for it and a reboot (or someone) cleared it. A failure is
// only slower starts: it is logged, never fatal.
func agentFavorDynmods(f *cmdutil.Factory) {
	if _, err := os.Stat(dynmodsMark); err != nil {
		return
	}
	s, err := readDynmods()
	if err != nil || s.On {
		return
	}
	if err := setDynmods(true); err != nil {
		f.Log.Warn("could not set favordynmods again, as aigate setup asked: starts wait for an RCU grace period", zap.Error(err))
		return
	}
	f.Log.Info("set favordynmods on the cgroup v2 mount again, as aigate setup asked", zap.String("mount", s.Mountpoint))
}
