package darwin

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Ending the sandbox user's processes. Waiting for the tool is not enough:
// a dev server, a `nohup` job or a daemonized helper it started keeps
// running as the sandbox user after it exits, and once the pf anchor is
// flushed those would have open network and, once the deny entries are
// gone, your secrets. So every process of the user is ended before
// anything is undone.
var (
	// EndGrace is how long processes have between SIGTERM and SIGKILL.
	EndGrace = 2 * time.Second
	// endRounds bounds the SIGKILL rounds: a process forking while it is
	// killed can leave a child that was not in the list yet.
	endRounds = 10
	// sleep is time.Sleep, replaced in tests.
	sleep = time.Sleep
)

// ListUserProcessesCommand lists the pids whose real uid is the sandbox
// user's (pgrep -U, which exits 1 when there are none).
func ListUserProcessesCommand(u SandboxUser) Command {
	return cmd("pgrep", "-U", strconv.FormatUint(uint64(u.UID), 10))
}

// SignalUserProcessesCommand sends sig to every process whose real uid is
// the sandbox user's; a setuid program it ran keeps that real uid.
func SignalUserProcessesCommand(u SandboxUser, sig string) Command {
	return cmd("pkill", "-"+sig, "-U", strconv.FormatUint(uint64(u.UID), 10))
}

// EndUserProcesses ends every process of the sandbox user: SIGTERM, a
// grace period, then SIGKILL until none is left. It fails when processes
// remain, and then nothing must be undone: their network and file limits
// must stay.
func EndUserProcesses(ctx context.Context, r Runner, u SandboxUser) error {
	pids, err := userPIDs(ctx, r, u)
	if err != nil || len(pids) == 0 {
		return err
	}
	// pkill exits 1 when nothing matched (all ended meanwhile).
	_, _ = SignalUserProcessesCommand(u, "TERM").run(ctx, r)
	for i := 0; i < endRounds; i++ {
		wait := EndGrace
		if i > 0 {
			wait = EndGrace / 10
		}
		for j := 0; j < 10; j++ {
			if pids, err = userPIDs(ctx, r, u); err != nil || len(pids) == 0 {
				return err
			}
			sleep(wait / 10)
		}
		_, _ = SignalUserProcessesCommand(u, "KILL").run(ctx, r)
	}
	if pids, err = userPIDs(ctx, r, u); err != nil || len(pids) == 0 {
		return err
	}
	return fmt.Errorf("processes of %s still running after SIGKILL (pids %s); its pf rules and file entries stay in place", u.Name, strings.Join(pids, " "))
}

// userPIDs runs pgrep. No output is no process (pgrep exits 1 then); any
// other output that is not a pid is pgrep's own failure.
func userPIDs(ctx context.Context, r Runner, u SandboxUser) ([]string, error) {
	c := ListUserProcessesCommand(u)
	out, err := c.run(ctx, r)
	var pids []string
	for _, f := range strings.Fields(string(out)) {
		if _, perr := strconv.Atoi(f); perr != nil {
			return nil, runError("list the processes of "+u.Name, c, out, err)
		}
		pids = append(pids, f)
	}
	return pids, nil
}

// Finish ends a session: every process of the sandbox user first, then
// the recorded changes are undone (the pf anchor last of all, since it was
// applied last). If processes survive, nothing is undone: the state file
// stays for `sudo aigate reset --force`, which tries again.
func Finish(ctx context.Context, r Runner, u SandboxUser, statePath string) error {
	if err := EndUserProcesses(ctx, r, u); err != nil {
		return err
	}
	return Revert(ctx, r, statePath)
}
