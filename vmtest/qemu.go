package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// vmConfig is what the QEMU command line is made of.
type vmConfig struct {
	kernel  string
	initrd  string
	accel   string // "tcg" or "tcg-single" (the only accelerator that works on the nested hosts we use) or "kvm"
	memMB   int
	cpus    int
	cmdline []string // extra kernel parameters
	shares  []hostShare
	disks   []string // images attached read-only as the guest's vda, vdb... (--host-root, --host-dir)
}

// kernelCmdline returns the kernel parameters: BPF in the LSM list is the
// point of the whole harness. Landlock is there too, where distributions
// that have BPF LSM put it (before bpf): aigate's sandboxes use it on both
// backends, and the fanotify backend refuses to run without it.
func kernelCmdline(extra []string) string {
	params := []string{
		"console=ttyS0",
		"quiet",
		"lsm=lockdown,capability,landlock,bpf",
		"panic=-1", // reboot at once on panic; -no-reboot turns that into an exit
		"oops=panic",
		"rdinit=/init",
		// Under TCG page-table isolation and the other mitigations only cost
		// time; they change nothing the tests look at.
		"mitigations=off",
		// Go's runtime calls getrandom at start; do not wait for entropy.
		"random.trust_cpu=on",
	}
	return strings.Join(append(params, extra...), " ")
}

// qemuArgs builds the qemu-system-x86_64 arguments.
func qemuArgs(c vmConfig) []string {
	accel := c.accel
	switch accel {
	case "tcg":
		accel = "tcg,thread=multi"
	case "tcg-single":
		// The vCPUs take turns on one host thread: kernel text patched by
		// one vCPU is never stale on another (6.12 oopsed on a stray
		// int3 under thread=multi, see README.md).
		accel = "tcg,thread=single"
	}
	cpu := "max"
	if c.accel == "kvm" {
		cpu = "host"
	}
	args := []string{
		"-accel", accel,
		"-cpu", cpu,
		"-m", strconv.Itoa(c.memMB),
		"-smp", strconv.Itoa(c.cpus),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-serial", "stdio",
		"-no-reboot",
		"-kernel", c.kernel,
		"-initrd", c.initrd,
		"-append", kernelCmdline(c.cmdline),
	}
	for _, d := range c.disks {
		args = append(args, "-drive", "file="+d+",if=virtio,format=raw,readonly=on")
	}
	if len(c.shares) > 0 {
		// vhost-user devices need guest memory that virtiofsd can map.
		args = append(args,
			"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", c.memMB),
			"-numa", "node,memdev=mem")
	}
	for i, s := range c.shares {
		id := fmt.Sprintf("vfs%d", i)
		args = append(args,
			"-chardev", "socket,id="+id+",path="+s.socket,
			"-device", "vhost-user-fs-pci,chardev="+id+",tag="+s.tag)
	}
	return args
}

// ansiCSI matches terminal control sequences the firmware prints.
var ansiCSI = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|c)`)

// vmResult is what the guest reported.
type vmResult struct {
	con     *console
	started time.Time
	initAt  time.Time // host time when /init's first marker arrived
	exitErr error     // qemu's own exit error, if any
	// cpu is the CPU time QEMU used (user and system, all its threads):
	// against the wall time it says whether the guest was busy or waiting,
	// that is whether running more of its tests at once could pay.
	cpu      time.Duration
	timedOut bool
}

// runVM starts QEMU, streams the serial console to out and parses the
// markers. It kills QEMU's process group when ctx ends (timeout, Ctrl-C).
func runVM(ctx context.Context, qemu string, args []string, marker string, out io.Writer, stderr io.Writer, verbose bool) (*vmResult, error) {
	cmd := exec.Command(qemu, args...)
	// Own process group: a Ctrl-C in the terminal reaches vmtest, which then
	// kills QEMU; QEMU never sees the terminal (stdin is /dev/null).
	cmd.SysProcAttr = childAttr()
	cmd.Stderr = stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	res := &vmResult{con: newConsole(marker), started: time.Now()}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", qemu, err)
	}
	stop := context.AfterFunc(ctx, func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	defer stop()

	// Lines before /init are firmware and kernel noise; keep them to show
	// only when the guest never reaches /init.
	var early []string
	r := bufio.NewReaderSize(pipe, 64*1024)
	for {
		s, err := r.ReadString('\n')
		if s != "" {
			s = strings.TrimRight(s, "\r\n")
			s = strings.ReplaceAll(s, "\r", "")
			wasInit := res.con.initSeen
			show, ok := res.con.line(s)
			if !wasInit && res.con.initSeen {
				res.initAt = time.Now()
			}
			switch {
			case !res.con.initSeen && !verbose:
				early = append(early, ansiCSI.ReplaceAllString(s, ""))
			case res.con.done && !verbose && strings.Contains(s, "reboot: Power down"):
				// The expected end, not worth a line.
			case ok:
				fmt.Fprintln(out, show)
			}
		}
		if err != nil {
			break
		}
	}
	res.exitErr = cmd.Wait()
	if ps := cmd.ProcessState; ps != nil {
		res.cpu = ps.UserTime() + ps.SystemTime()
	}
	if ctx.Err() != nil {
		res.timedOut = true
	}
	if !res.con.initSeen && !verbose {
		for _, s := range early {
			fmt.Fprintln(out, s)
		}
	}
	return res, nil
}

// verdict summarises a run: nil when every test binary ran and exited 0.
func verdict(res *vmResult, tests []string, limit time.Duration) error {
	var errs []error
	con := res.con
	switch {
	case res.timedOut:
		errs = append(errs, fmt.Errorf("time limit (--timeout %v) reached; QEMU was killed", limit))
	case len(con.mountErrs) > 0:
		errs = append(errs, fmt.Errorf("the guest could not mount shared directories: %s", strings.Join(con.mountErrs, ", ")))
	case con.panicked:
		errs = append(errs, errors.New("the guest kernel panicked"))
	case !con.initSeen:
		errs = append(errs, errors.New("the guest never reached /init"))
	}
	if con.initSeen && !con.hasBPF() {
		errs = append(errs, fmt.Errorf("bpf is not in the guest's LSM list (%q)", con.lsm))
	}
	for _, name := range tests {
		st, ok := con.status[name]
		switch {
		case !ok && con.current == name:
			errs = append(errs, fmt.Errorf("%s: did not finish", name))
		case !ok:
			errs = append(errs, fmt.Errorf("%s: did not run", name))
		case st != 0:
			errs = append(errs, fmt.Errorf("%s: exit status %d", name, st))
		}
	}
	if len(errs) == 0 && !con.done {
		errs = append(errs, errors.New("/init did not finish"))
	}
	return errors.Join(errs...)
}
