package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hostShare is a host directory the guest mounts read-only over virtiofs.
// Debian's cloud kernels lack 9p (CONFIG_NET_9P is off) but build virtiofs
// as a module, and QEMU 7.2 ships the C virtiofsd.
type hostShare struct {
	host   string // directory on the host
	guest  string // mount point in the guest
	tag    string // virtiofs tag
	socket string // vhost-user socket between QEMU and virtiofsd
}

// parseShares turns --share values into shares whose sockets live in dir.
func parseShares(values []string, dir string) ([]hostShare, error) {
	var shares []hostShare
	for i, v := range values {
		host, guest, _ := strings.Cut(v, ":")
		abs, err := filepath.Abs(host)
		if err != nil {
			return nil, err
		}
		if !isDir(abs) {
			return nil, fmt.Errorf("--share %q: %s is not a directory", v, abs)
		}
		if guest == "" {
			guest = abs
		}
		if !strings.HasPrefix(guest, "/") {
			return nil, fmt.Errorf("--share %q: guest path must be absolute", v)
		}
		shares = append(shares, hostShare{
			host: abs, guest: guest, tag: "share" + strconv.Itoa(i),
			socket: filepath.Join(dir, "share"+strconv.Itoa(i)+".sock"),
		})
	}
	return shares, nil
}

func findVirtiofsd() (string, error) {
	if p, err := exec.LookPath("virtiofsd"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("virtiofsd not found; install it with: apt-get install qemu-system-common (Debian 12) or virtiofsd")
}

// startVirtiofsd serves s to QEMU. The guest mounts the share read-only, but
// the guest runs tests as root, so the host side is read-only too: virtiofsd
// runs in a private mount namespace whose only view of the directory is a
// read-only bind mount that the host never sees.
func startVirtiofsd(ctx context.Context, virtiofsd string, s hostShare, logPath string) (*exec.Cmd, error) {
	mnt := strings.TrimSuffix(s.socket, ".sock") + ".ro"
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return nil, err
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	script := `mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && exec "$3" --socket-path="$4" -o source="$2" -o cache=auto -o sandbox=chroot`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", s.host, mnt, virtiofsd, s.socket)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start virtiofsd: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(s.socket); err == nil {
			return cmd, nil
		}
		select {
		case <-exited:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("virtiofsd for %s exited: %s", s.host, strings.TrimSpace(string(out)))
		case <-ctx.Done():
			stopProcess(cmd)
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stopProcess(cmd)
			return nil, fmt.Errorf("virtiofsd for %s did not create %s within 10s", s.host, s.socket)
		}
	}
}

// stopProcess kills a process group started with Setpgid.
func stopProcess(cmd *exec.Cmd) {
	if cmd != nil && cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
