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

	"github.com/aigate-dev/aigate/internal/api"
)

func init() { register(newSetupCmd) }

// unitPath is where setup installs the agent's systemd unit.
const unitPath = "/etc/systemd/system/aigate.service"

// pinDir is where a pinning backend keeps its BPF state.
const pinDir = "/sys/fs/bpf/aigate"

func newSetupCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "setup",
		Short: "Install the agent so that aigate run works without sudo",
		Long: `Prepare this machine for unprivileged use (run it with sudo):

  - create the group aigate and add the user who ran sudo to it
    (log in again for the membership to count);
  - where systemd runs the machine, install, enable and start the
    aigate.service unit that runs ` + "`aigate agent`" + `; elsewhere, print how
    to start the agent;
  - check the kernel like aigate doctor.

sudo aigate reset --force undoes it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runSetup(f) },
	}
}

func runSetup(f *Factory) error {
	if f.Env.Euid != 0 {
		return &exitError{ExitError, errors.New("setup changes groups and services: run it with sudo (sudo aigate setup)")}
	}
	if _, err := user.LookupGroup(api.Group); err != nil {
		if err := command("groupadd", "--system", api.Group); err != nil {
			return fmt.Errorf("create group %s: %w", api.Group, err)
		}
		f.printf("created group %s\n", api.Group)
	}
	if u := f.Env.Getenv("SUDO_USER"); u != "" && u != "root" {
		if err := command("usermod", "-aG", api.Group, u); err != nil {
			return fmt.Errorf("add %s to group %s: %w", u, api.Group, err)
		}
		f.printf("added %s to group %s (log in again, or run `newgrp %s`, for it to apply)\n", u, api.Group, api.Group)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find aigate's own binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return fmt.Errorf("find aigate's own binary: %w", err)
	}
	if systemdRunning() {
		if err := os.WriteFile(unitPath, []byte(unitFile(exe)), 0o644); err != nil {
			return fmt.Errorf("install %s: %w", unitPath, err)
		}
		for _, args := range [][]string{{"daemon-reload"}, {"enable", "--now", "aigate.service"}} {
			if err := command("systemctl", args...); err != nil {
				return fmt.Errorf("systemctl %v: %w", args, err)
			}
		}
		f.printf("installed and started %s (logs: journalctl -u aigate)\n", unitPath)
	} else {
		f.printf("systemd is not running this machine: start the agent with your init system, or by hand:\n  sudo %s agent\n", exe)
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

// unitFile is the agent's systemd unit; deploy/aigate.service is the same
// template for packagers.
func unitFile(exe string) string {
	return `[Unit]
Description=aigate agent: kernel-enforced sandboxes for AI coding agents
Documentation=https://github.com/aigate-dev/aigate/blob/main/docs/agent.md
After=local-fs.target

[Service]
Type=simple
ExecStart=` + exe + ` agent
Restart=on-failure
RestartSec=1
# The agent manages cgroups and BPF state: let it stop its sandboxes itself.
KillMode=mixed
TimeoutStopSec=15
RuntimeDirectory=aigate
RuntimeDirectoryPreserve=yes
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
	for _, p := range []string{unitPath, filepath.Dir(api.DefaultSocket), pinDir} {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	if _, err := user.LookupGroup(api.Group); err == nil {
		out = append(out, "group "+api.Group)
	}
	return out
}

// ResetAgent stops and removes the agent's unit, its socket directory,
// its BPF pins and the aigate group. The agent ends its sandboxes when it
// stops; reset's own cgroup cleanup removes any that a crash left.
func ResetAgent(f *Factory) error {
	var errs []error
	if _, err := os.Stat(unitPath); err == nil {
		if systemdRunning() {
			_ = command("systemctl", "disable", "--now", "aigate.service")
		}
		if err := os.Remove(unitPath); err != nil {
			errs = append(errs, err)
		} else {
			f.printf("removed %s\n", unitPath)
		}
		if systemdRunning() {
			_ = command("systemctl", "daemon-reload")
		}
	}
	for _, dir := range []string{filepath.Dir(api.DefaultSocket), pinDir} {
		if _, err := os.Lstat(dir); err == nil {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			} else {
				f.printf("removed %s\n", dir)
			}
		}
	}
	if _, err := user.LookupGroup(api.Group); err == nil {
		if err := command("groupdel", api.Group); err != nil {
			errs = append(errs, fmt.Errorf("remove group %s: %w", api.Group, err))
		} else {
			f.printf("removed group %s\n", api.Group)
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
