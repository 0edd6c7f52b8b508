//go:build linux

package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/agent"
	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/backend"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// stateDir holds the agent's trust records (agent.DefaultTrustDir).
var stateDir = filepath.Dir(agent.DefaultTrustDir)

// unitPath is where setup installs the agent's systemd unit.
const unitPath = "/etc/systemd/system/aigate.service"

// pinDir is where a pinning backend keeps its BPF state.
const pinDir = "/sys/fs/bpf/aigate"

func newSetupCmd(f *cmdutil.Factory) *cobra.Command {
	var landlockAudit, favorDynmods bool
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Install the agent so that aigate run works without sudo",
		Long: `Prepare this machine for unprivileged use (run it with sudo):

  - create the group aigate and add the user who ran sudo to it
    (log in again for the membership to count);
  - where systemd runs the machine, install, enable and start the
    aigate.service unit that runs ` + "`aigate agent`" + `; elsewhere, print how
    to start the agent;
  - check the kernel like aigate doctor.

With --landlock-audit the unit runs the agent with --landlock-audit: it
enables the kernel's audit, so that the sandboxes' Landlock refusals
(writes to the read-only home, ptrace and signals of processes outside)
become events like every other denial. Off by default: once audit has
been enabled, every process the machine starts pays for an audit context
on each system call until the next boot (docs/backends.md measures it),
and without auditd the kernel also prints the records to its log.

With --favordynmods (Linux 6.0 or later; not the default) it remounts the
cgroup v2 hierarchy with favordynmods, keeping its other options: moving a
run into its sandbox then no longer waits for an RCU grace period (5-16 ms
of each start through the agent), and every fork, thread start and exit on
the machine pays a little more (docs/performance.md measures both). The
option is machine-wide and a reboot clears it; the agent sets it again at
start. --favordynmods=false turns off again what an earlier setup turned
on (on Linux 6.18 and later, cgroup.procs writes keep a per-process lock
until the next boot once it has been on). Without the flag, setup leaves
the option as it is. It is not the default because the change is
machine-wide and, made while other processes fork and wait on fanotify
decisions, was seen once to coincide with sandbox creations stalling for
30 s (docs/agent.md); set it when the machine is quiet.

sudo aigate reset --force undoes it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSetup(f, landlockAudit, dynmodsAsked(cmd, favorDynmods))
		},
	}
	cmd.Flags().BoolVar(&landlockAudit, "landlock-audit", false, "have the agent enable the kernel's audit, so that Landlock's refusals are reported (a cost to every process: docs/backends.md)")
	cmd.Flags().BoolVar(&favorDynmods, "favordynmods", false, "mount the cgroup v2 hierarchy with favordynmods, so that starts do not wait for an RCU grace period (machine-wide; =false undoes an earlier setup's; without the flag left as it is)")
	return cmd
}

// dynmodsAsked is what setup is to do with favordynmods: nil, leave it as
// it is, unless --favordynmods was given, either way (the change is
// machine-wide: docs/agent.md).
func dynmodsAsked(cmd *cobra.Command, on bool) *bool {
	if !cmd.Flags().Changed("favordynmods") {
		return nil
	}
	return &on
}

func runSetup(f *cmdutil.Factory, landlockAudit bool, favorDynmods *bool) error {
	if f.Env.Euid != 0 {
		return &cmdutil.StatusError{Code: cmdutil.ExitError, Err: errors.New("setup changes groups and services: run it with sudo (sudo aigate setup)")}
	}
	if _, err := user.LookupGroup(api.Group); err != nil {
		if err := command("groupadd", "--system", api.Group); err != nil {
			return fmt.Errorf("create group %s: %w", api.Group, err)
		}
		f.Printf("created group %s\n", api.Group)
	}
	// The same user reset and the config commands act for: SUDO_UID
	// first, then SUDO_USER.
	u, err := config.InvokingUser(f.Env)
	if err != nil {
		return err
	}
	if u.Sudo {
		if err := command("usermod", "-aG", api.Group, u.Name); err != nil {
			return fmt.Errorf("add %s to group %s: %w", u.Name, api.Group, err)
		}
		f.Printf("added %s to group %s (log in again, or run `newgrp %s`, for it to apply)\n", u.Name, api.Group, api.Group)
	} else {
		f.Printf("not run through sudo, so no user was added to group %s: add users with `usermod -aG %s USER`\n", api.Group, api.Group)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find aigate's own binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return fmt.Errorf("find aigate's own binary: %w", err)
	}
	args := ""
	if landlockAudit {
		args = " --landlock-audit"
	}
	if systemdRunning() {
		if err := os.WriteFile(unitPath, []byte(unitFile(exe+" agent"+args)), 0o644); err != nil {
			return fmt.Errorf("install %s: %w", unitPath, err)
		}
		for _, args := range [][]string{{"daemon-reload"}, {"enable", "--now", "aigate.service"}} {
			if err := command("systemctl", args...); err != nil {
				return fmt.Errorf("systemctl %v: %w", args, err)
			}
		}
		f.Printf("installed and started %s (logs: journalctl -u aigate)\n", unitPath)
	} else {
		f.Printf("systemd is not running this machine: start the agent with your init system, or by hand:\n  sudo %s agent%s\n", exe, args)
	}
	if favorDynmods != nil {
		if err := setupFavorDynmods(f, *favorDynmods); err != nil {
			// Only slower starts: said, not fatal; doctor repeats it.
			f.Printf("could not set favordynmods: %v\n", err)
		}
	}
	printDoctor(f, f.Doctor(true))
	return nil
}

// systemdRunning is sd_booted(3): systemd creates /run/systemd/system/
// early at boot when it is PID 1.
func systemdRunning() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// unitFile is the agent's systemd unit running the command line cmd
// (aigate's binary, "agent" and its flags); deploy/aigate.service is the
// same template for packagers.
func unitFile(cmd string) string {
	return `[Unit]
Description=aigate agent: kernel-enforced sandboxes for AI coding agents
Documentation=https://github.com/aigate-dev/aigate/blob/main/docs/agent.md
After=local-fs.target

[Service]
Type=simple
ExecStart=` + cmd + `
Restart=on-failure
RestartSec=1
# The agent manages cgroups and BPF state: let it stop its sandboxes itself.
KillMode=mixed
TimeoutStopSec=15
RuntimeDirectory=aigate
RuntimeDirectoryPreserve=yes
# /var/lib/aigate (root's, 0755): the users' trust records, out of every
# sandbox's reach.
StateDirectory=aigate
StateDirectoryMode=0755
# The sandboxes live below the agent's own cgroup tree, not the service's.
Delegate=no

[Install]
WantedBy=multi-user.target
`
}

// ResetAgentPlan lists what ResetAgent would remove, for reset's dry run.
// reset.go (owned by the CLI) calls it and ResetAgent under --force.
func ResetAgentPlan() []string {
	var out []string
	for _, p := range []string{unitPath, filepath.Dir(api.DefaultSocket), pinDir, stateDir} {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	if _, err := os.Lstat(dynmodsMark); err == nil {
		out = append(out, "favordynmods on the cgroup v2 mount (aigate setup turned it on)")
	}
	if _, err := os.Lstat(loader.KeptRoot); err == nil {
		out = append(out, loader.KeptRoot+" (the network programs an embedded `sudo aigate run` keeps loaded for the next one)")
	}
	if uid := os.Geteuid(); uid == 0 {
		if n := len(sandbox.Abandoned(sandbox.DefaultParent)); n > 0 {
			out = append(out, fmt.Sprintf("sandbox cgroups in %s whose owner has died (%d)", filepath.Join(cgroupRoot(), sandbox.DefaultParent), n))
		}
	} else if n := ownSandboxes(uid); n > 0 {
		// A user sees and counts only their own sandboxes, as in status.
		out = append(out, fmt.Sprintf("your %d running sandbox(es) in %s (the agent removes each when it ends)", n, filepath.Join(cgroupRoot(), sandbox.DefaultParent)))
	}
	if _, err := user.LookupGroup(api.Group); err == nil {
		out = append(out, "group "+api.Group)
	}
	return out
}

// cgroupRoot is the cgroup v2 mount, "" without one.
func cgroupRoot() string {
	root, _ := cgroup.Mountpoint()
	return root
}

// sandboxCgroups lists the names of the sandbox cgroups that exist.
func sandboxCgroups() []string {
	root := cgroupRoot()
	if root == "" {
		return nil
	}
	entries, _ := os.ReadDir(filepath.Join(root, sandbox.DefaultParent))
	var names []string
	for _, e := range entries {
		if _, _, ok := sandbox.ParseName(e.Name()); ok && e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

// ownSandboxes counts the sandboxes whose owning client process runs as
// uid; those of dead owners cannot be attributed and are root's to sweep.
func ownSandboxes(uid int) int {
	n := 0
	for _, name := range sandboxCgroups() {
		_, owner, _ := sandbox.ParseName(name)
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d", owner), &st) == nil && int(st.Uid) == uid {
			n++
		}
	}
	return n
}

// agentRunning reports whether a live agent holds the default socket's
// lock (see api.Listen): the lock dies with the agent, the file does not.
func agentRunning() bool {
	lock, err := os.Open(api.DefaultSocket + ".lock")
	if err != nil {
		return false
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	return false
}

var errAgentRunning = fmt.Errorf("an agent is running (it holds %s.lock): stop it first (systemctl stop aigate, or kill it), then run reset again", api.DefaultSocket)

// ResetAgent stops and removes the agent's unit, its socket directory,
// its BPF pins, the sandbox cgroups whose owner has died and the aigate
// group. A stopping agent ends its own sandboxes; the sweep removes those a
// crash left (killing what still runs in them: nothing enforces their
// policy any more). Sandboxes of a live `aigate run` are left alone, as is
// an agent that systemd does not run: reset refuses until it is stopped,
// since its pins are what keeps its sandboxes enforced if it crashes.
func ResetAgent(f *cmdutil.Factory) error {
	if !systemdRunning() && agentRunning() {
		return errAgentRunning
	}
	var errs []error
	if _, err := os.Stat(unitPath); err == nil {
		if systemdRunning() {
			_ = command("systemctl", "disable", "--now", "aigate.service")
		}
		if err := os.Remove(unitPath); err != nil {
			errs = append(errs, err)
		} else {
			f.Printf("removed %s\n", unitPath)
		}
		if systemdRunning() {
			_ = command("systemctl", "daemon-reload")
		}
	}
	if agentRunning() {
		return errors.Join(append(errs, errAgentRunning)...)
	}
	// Before stateDir goes: its mark says whether setup set it.
	if err := undoFavorDynmods(f); err != nil {
		errs = append(errs, err)
	}
	for _, dir := range []string{filepath.Dir(api.DefaultSocket), pinDir, stateDir} {
		if _, err := os.Lstat(dir); err == nil {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			} else {
				f.Printf("removed %s\n", dir)
			}
		}
	}
	if _, err := os.Lstat(loader.KeptRoot); err == nil {
		// Unpinning takes nothing from a running sandbox: its links hold
		// the programs and maps they use.
		if err := os.RemoveAll(loader.KeptRoot); err != nil {
			errs = append(errs, err)
		} else {
			f.Printf("removed %s (network programs kept loaded between embedded runs)\n", loader.KeptRoot)
		}
	}
	if len(sandboxCgroups()) > 0 {
		notes, err := sandbox.Sweep(sandbox.DefaultParent)
		for _, n := range notes {
			f.Printf("%s\n", n)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove stale sandboxes: %w", err))
		}
	}
	// What killed runs pinned, once their sandboxes are gone.
	if err := backend.ReapRunPins(sandbox.DefaultParent, func(pid int) bool { return sandbox.Left(sandbox.DefaultParent, pid) }); err != nil {
		errs = append(errs, err)
	}
	if _, err := user.LookupGroup(api.Group); err == nil {
		if err := command("groupdel", api.Group); err != nil {
			errs = append(errs, fmt.Errorf("remove group %s: %w", api.Group, err))
		} else {
			f.Printf("removed group %s\n", api.Group)
		}
	}
	return errors.Join(errs...)
}

func command(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, out)
	}
	return nil
}
