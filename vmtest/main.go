// Command vmtest runs aigate's kernel tests inside a QEMU virtual machine
// whose kernel has BPF LSM active, because many hosts (including the ones
// aigate is developed on) refuse to load BPF-LSM programs.
//
// It downloads a Debian cloud kernel through apt, builds an initramfs of
// busybox-static plus static test binaries (`go test -c`), boots it, streams
// the guest's console and exits non-zero when any test binary fails, the
// guest crashes, or the time limit passes. See vmtest/README.md.
//
//	go run ./vmtest [flags] [-- test binary flags]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

type options struct {
	pkgs     listFlag
	bins     listFlag
	builds   listFlag
	files    listFlag
	env      listFlag
	cmdline  listFlag
	shares   listFlag
	tools    listFlag
	hostDirs listFlag
	hostRoot bool
	kernel   string
	cache    string
	timeout  time.Duration
	mem      int
	cpus     int
	accel    string
	tags     string
	json     string
	verbose  bool
	keep     bool
	testArgs []string
}

// Exit codes, distinct so scripts can tell a failing test from a broken harness.
const (
	exitOK         = 0
	exitTestFailed = 1 // a test binary failed, or a test did not run/finish
	exitHarness    = 2 // vmtest itself could not set up or run the VM
	exitUsage      = 3 // bad flags
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func defaultCache() string {
	if d := os.Getenv("AIGATE_VMTEST_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "aigate-vmtest")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "aigate-vmtest")
	}
	return filepath.Join(os.TempDir(), "aigate-vmtest")
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("vmtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: go run ./vmtest [flags] [-- test binary flags]

Runs the tests of the given packages (default: every package whose tests
call testutil.SkipUnlessLSM) as root inside a QEMU VM with BPF LSM active. Flags after -- go to every test binary, e.g.
  go run ./vmtest --pkg ./internal/loader -- -test.v -test.run TestProbe

Flags:
`)
		fs.PrintDefaults()
	}
	fs.Var(&o.pkgs, "pkg", "Go `package` whose tests to run (repeatable)")
	fs.Var(&o.bins, "bin", "static binary to copy to /usr/local/bin, as `path[:guestpath]` (repeatable)")
	fs.Var(&o.builds, "build", "main package to build statically into /usr/local/bin, as `pkg[:guestpath]` (repeatable), e.g. ./cmd/aigate")
	fs.Var(&o.files, "file", "host file or directory to copy into the guest, as `host:guestpath` (repeatable)")
	fs.Var(&o.env, "env", "`KEY=VALUE` to set for the tests (repeatable)")
	fs.Var(&o.shares, "share", "host `dir[:guestpath]` to mount read-only in the guest over virtiofs (repeatable; default guest path: the same)")
	fs.Var(&o.tools, "host-tool", "host `program` to copy into /usr/local/bin with its shared libraries (repeatable; default: ip; none: no tools)")
	fs.BoolVar(&o.hostRoot, "host-root", false, "lay the host's /usr (with /bin, /lib, /sbin) under the guest's, read-only from a cached ext4 image with a tmpfs overlay: bash, python3, git, node... run in the guest")
	fs.Var(&o.hostDirs, "host-dir", "host `dir` to add to the --host-root image, laid over the same path in the guest (repeatable; implies --host-root), e.g. an npm prefix")
	fs.Var(&o.cmdline, "append", "extra kernel `parameter` (repeatable)")
	fs.StringVar(&o.kernel, "kernel", "6.1", "kernel: 6.1, 6.12 (newest Debian cloud kernel of that series), a linux-image-* package, or a vmlinuz path")
	fs.StringVar(&o.cache, "cache", defaultCache(), "cache `dir` for kernels and the initramfs base (env AIGATE_VMTEST_CACHE)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "time limit for the whole run, build included")
	fs.IntVar(&o.mem, "mem", 2048, "guest memory in `MiB`")
	fs.IntVar(&o.cpus, "smp", 2, "guest CPUs")
	fs.StringVar(&o.accel, "accel", "tcg-single", "QEMU accelerator: tcg-single (one host thread for all vCPUs), tcg (one host thread per vCPU), or kvm where nested virtualisation works")
	fs.StringVar(&o.tags, "tags", "", "build `tags` for the test binaries")
	fs.StringVar(&o.json, "json", "", "write each test's and subtest's result to `file` as go test -json events (Action, Package, Test), for skipcheck")
	fs.BoolVar(&o.verbose, "verbose", false, "show firmware and kernel boot output")
	fs.BoolVar(&o.keep, "keep", false, "keep the run directory (initramfs, binaries) and print its path")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.testArgs = fs.Args()
	if o.accel != "tcg" && o.accel != "tcg-single" && o.accel != "kvm" {
		return nil, fmt.Errorf("--accel %q: want tcg, tcg-single or kvm", o.accel)
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "vmtest:", err)
		return exitUsage
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, o.timeout)
	defer cancelT()

	start := time.Now()
	code, summary, err := runVMTests(ctx, o, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "vmtest:", err)
	}
	fmt.Fprintf(stdout, "vmtest: wall time %.1fs\n", time.Since(start).Seconds())
	// Last, so that CI reads the counts as the run's closing line.
	fmt.Fprint(stdout, summary)
	return code
}

// runVMTests does the work; it returns the exit code, the closing lines with
// the counts (once the VM ran) and what went wrong.
func runVMTests(ctx context.Context, o *options, stdout, stderr io.Writer) (code int, summary string, err error) {
	if err := checkTools(!strings.Contains(o.kernel, "/")); err != nil {
		return exitHarness, "", err
	}
	busybox, err := staticBusybox()
	if err != nil {
		return exitHarness, "", err
	}
	if err := os.MkdirAll(filepath.Join(o.cache, "kernel"), 0o755); err != nil {
		return exitHarness, "", fmt.Errorf("cache dir: %w", err)
	}

	t0 := time.Now()
	kernel, err := resolveKernel(ctx, o.kernel, o.cache, stdout)
	if err != nil {
		return exitHarness, "", err
	}
	base, err := cachedBase(o.cache, busybox)
	if err != nil {
		return exitHarness, "", err
	}
	tKernel := time.Since(t0)

	removeStaleRuns(o.cache, 24*time.Hour)
	runDir, err := os.MkdirTemp(filepath.Join(o.cache), "run-")
	if err != nil {
		return exitHarness, "", fmt.Errorf("run dir: %w", err)
	}
	if o.keep {
		fmt.Fprintln(stdout, "vmtest: keeping", runDir)
	} else {
		defer os.RemoveAll(runDir)
	}

	t1 := time.Now()
	var pkgs []goPackage
	if len(o.pkgs) == 0 {
		if pkgs, err = defaultPackages(ctx); err != nil {
			return exitHarness, "", err
		}
		if len(pkgs) == 0 {
			return exitHarness, "", errors.New("no package's tests call testutil.SkipUnlessLSM; name packages with --pkg")
		}
	} else if pkgs, err = goList(ctx, o.pkgs...); err != nil {
		return exitHarness, "", err
	}
	names := testNames(pkgs)
	var files []guestFile
	var tests []guestTest
	for i, p := range pkgs {
		if p.Name == "" || p.Dir == "" {
			return exitHarness, "", fmt.Errorf("package %s not found", p.ImportPath)
		}
		bin := filepath.Join(runDir, names[i]+".test")
		if err := buildTest(ctx, p, bin, o.tags, stderr); err != nil {
			return exitHarness, "", err
		}
		// Tests run in a copy of their package directory, as under go test,
		// so relative paths such as testdata/ work.
		guestDir := "/src/" + p.ImportPath
		if p.Module != nil {
			if rel, err := filepath.Rel(p.Module.Dir, p.Dir); err == nil {
				guestDir = path.Join("/src", filepath.ToSlash(rel))
			}
		}
		files = append(files, guestFile{host: bin, guest: "/tests/" + names[i] + ".test"})
		if td := filepath.Join(p.Dir, "testdata"); isDir(td) {
			more, err := expandDir(td, guestDir+"/testdata")
			if err != nil {
				return exitHarness, "", err
			}
			files = append(files, more...)
		}
		tests = append(tests, guestTest{name: names[i], bin: "/tests/" + names[i] + ".test", dir: guestDir})
	}
	for _, b := range o.builds {
		pkg, guest, _ := strings.Cut(b, ":")
		if guest == "" {
			guest = "/usr/local/bin/" + path.Base(strings.TrimSuffix(pkg, "/"))
		}
		out := filepath.Join(runDir, "build-"+path.Base(guest))
		if err := buildBinary(ctx, pkg, out, o.tags, stderr); err != nil {
			return exitHarness, "", err
		}
		files = append(files, guestFile{host: out, guest: guest})
	}
	for _, b := range o.bins {
		host, guest, _ := strings.Cut(b, ":")
		if guest == "" {
			guest = "/usr/local/bin/" + filepath.Base(host)
		}
		if err := checkStatic(host); err != nil {
			return exitUsage, "", fmt.Errorf("--bin %s: %w", b, err)
		}
		files = append(files, guestFile{host: host, guest: guest})
	}
	tools, defaults := []string(o.tools), len(o.tools) == 0
	if defaults {
		tools = defaultHostTools
	}
	seen := map[string]bool{}
	for _, name := range tools {
		if name == "none" {
			continue
		}
		more, err := hostTool(ctx, name)
		if err != nil && defaults {
			// A convenience, not a requirement: tests that need it say so.
			fmt.Fprintf(stderr, "vmtest: not copying %s into the guest: %v\n", name, err)
			continue
		}
		if err != nil {
			return exitHarness, "", err
		}
		for _, f := range more {
			if !seen[f.guest] {
				seen[f.guest] = true
				files = append(files, f)
			}
		}
	}
	for _, f := range o.files {
		host, guest, ok := strings.Cut(f, ":")
		if !ok || !strings.HasPrefix(guest, "/") {
			return exitUsage, "", fmt.Errorf("--file %q: want host:/absolute/guest/path", f)
		}
		if isDir(host) {
			more, err := expandDir(host, guest)
			if err != nil {
				return exitHarness, "", err
			}
			files = append(files, more...)
		} else {
			files = append(files, guestFile{host: host, guest: guest})
		}
	}
	env := guestEnv(os.LookupEnv)
	for _, kv := range o.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return exitUsage, "", fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		env[k] = v
	}

	shares, err := parseShares(o.shares, runDir)
	if err != nil {
		return exitUsage, "", err
	}
	var modules []string
	var guestShares []guestShare
	if len(shares) > 0 {
		virtiofsd, err := findVirtiofsd()
		if err != nil {
			return exitHarness, "", err
		}
		for _, m := range kernelModules(kernel) {
			g := "/lib/modules/vmtest/" + filepath.Base(m)
			files = append(files, guestFile{host: m, guest: g})
			modules = append(modules, g)
		}
		for _, s := range shares {
			cmd, err := startVirtiofsd(ctx, virtiofsd, s, strings.TrimSuffix(s.socket, ".sock")+".log")
			if err != nil {
				return exitHarness, "", err
			}
			defer stopProcess(cmd)
			guestShares = append(guestShares, guestShare{tag: s.tag, path: s.guest})
		}
	}

	var disks, guestDisks []string
	var overlays []guestOverlay
	if o.hostRoot || len(o.hostDirs) > 0 {
		var extra []string
		for _, d := range o.hostDirs {
			abs, err := filepath.Abs(d)
			if err != nil || !isDir(abs) {
				return exitUsage, "", fmt.Errorf("--host-dir %s: not a directory", d)
			}
			extra = append(extra, abs)
		}
		img, err := hostRootImage(ctx, o.cache, stdout)
		if err != nil {
			return exitHarness, "", err
		}
		disks, guestDisks = []string{img}, []string{guestHostRoot}
		if len(extra) > 0 {
			img, err := hostDirsImage(ctx, runDir, extra)
			if err != nil {
				return exitHarness, "", err
			}
			disks, guestDisks = append(disks, img), append(guestDisks, guestHostDirs)
		}
		if len(modules) == 0 {
			for _, m := range kernelModules(kernel) {
				g := "/lib/modules/vmtest/" + filepath.Base(m)
				files = append(files, guestFile{host: m, guest: g})
				modules = append(modules, g)
			}
		}
		overlays = hostRootOverlays(extra)
	}
	for _, m := range cachedModules(kernel, testModules) {
		g := "/lib/modules/vmtest/" + filepath.Base(m)
		files = append(files, guestFile{host: m, guest: g})
		modules = append(modules, g)
	}

	marker := newMarker()
	script := initScript(initConfig{marker: marker, tests: tests, args: o.testArgs, env: env, modules: modules, shares: guestShares, disks: guestDisks, overlays: overlays})
	initrd := filepath.Join(runDir, "initrd.cpio")
	var dirs []string
	for _, t := range tests {
		dirs = append(dirs, t.dir)
	}
	if err := writeInitrd(initrd, base, script, dirs, files); err != nil {
		return exitHarness, "", fmt.Errorf("initramfs: %w", err)
	}
	tBuild := time.Since(t1)
	st, _ := os.Stat(initrd)
	fmt.Fprintf(stdout, "vmtest: kernel %s; initramfs %.1f MiB; %d test binaries; setup %.1fs (kernel %.1fs, build %.1fs)\n",
		kernel, float64(st.Size())/(1<<20), len(tests), tKernel.Seconds()+tBuild.Seconds(), tKernel.Seconds(), tBuild.Seconds())

	res, err := runVM(ctx, "qemu-system-x86_64", qemuArgs(vmConfig{
		kernel: kernel, initrd: initrd, accel: o.accel, memMB: o.mem, cpus: o.cpus, cmdline: o.cmdline, shares: shares, disks: disks,
	}), marker, stdout, stderr, o.verbose)
	if err != nil {
		return exitHarness, "", err
	}
	vmTime := time.Since(res.started)
	boot := "the guest never reached /init"
	if !res.initAt.IsZero() {
		boot = fmt.Sprintf("/init reached after %.1fs (guest uptime %ss)", res.initAt.Sub(res.started).Seconds(), res.con.initUptime)
	}
	if o.json != "" {
		if err := writeResults(o.json, res.con.results, names, pkgs); err != nil {
			return exitHarness, "", err
		}
	}
	names = names[:0]
	for _, t := range tests {
		names = append(names, t.name)
	}
	passed, failed := 0, 0
	for _, n := range names {
		if st, ok := res.con.status[n]; ok && st == 0 {
			passed++
		} else {
			failed++
		}
	}
	fmt.Fprintf(stdout, "vmtest: VM ran %.1fs, %s\n", vmTime.Seconds(), boot)
	if vmTime > 0 && res.cpu > 0 {
		fmt.Fprintf(stdout, "vmtest: QEMU used %.1fs of CPU (%.0f%% of the time it ran)\n", res.cpu.Seconds(), 100*res.cpu.Seconds()/vmTime.Seconds())
	}
	t := res.con.tests
	if t.passed+t.failed+t.skipped > 0 { // only -test.v prints them
		summary = fmt.Sprintf("vmtest: go tests seen: %d passed, %d failed, %d skipped\n", t.passed, t.failed, t.skipped)
	}
	summary += fmt.Sprintf("vmtest: %d passed, %d failed\n", passed, failed)
	for _, l := range res.con.failures(8) {
		summary += l + "\n"
	}
	if err := verdict(res, names, o.timeout); err != nil {
		if res.timedOut && errors.Is(ctx.Err(), context.Canceled) {
			err = errors.New("interrupted; QEMU was killed")
		}
		// Again among the closing lines: a CI log shows its tail.
		summary += "vmtest: FAILED: " + err.Error() + "\n"
		return exitTestFailed, summary, err
	}
	return exitOK, summary, nil
}

// guestEnv is the tests' environment before --env: BPF LSM is active in the
// guest (verdict checks it), so a BPF-LSM test that skips there is a failure
// unless the caller explicitly says otherwise.
func guestEnv(lookup func(string) (string, bool)) map[string]string {
	env := map[string]string{"HOME": "/root", "AIGATE_VMTEST": "1", "TMPDIR": "/tmp", "AIGATE_REQUIRE_LSM": "1"}
	for _, k := range []string{"AIGATE_REQUIRE_KERNEL", "AIGATE_REQUIRE_LSM"} {
		if v, ok := lookup(k); ok {
			env[k] = v
		}
	}
	return env
}

// removeStaleRuns deletes run directories that a killed vmtest left behind.
// Only old ones: another vmtest may be using a recent one right now.
func removeStaleRuns(cache string, age time.Duration) {
	dirs, _ := filepath.Glob(filepath.Join(cache, "run-*"))
	for _, d := range dirs {
		if st, err := os.Stat(d); err == nil && time.Since(st.ModTime()) > age {
			os.RemoveAll(d)
		}
	}
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// writeInitrd concatenates the cached base archive and this run's archive:
// the kernel unpacks concatenated newc archives in order.
func writeInitrd(dst, base, script string, dirs []string, files []guestFile) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := os.Open(base)
	if err != nil {
		return err
	}
	defer b.Close()
	if _, err := io.Copy(f, b); err != nil {
		return err
	}
	if err := runArchive(f, script, dirs, files); err != nil {
		return err
	}
	return f.Close()
}

// writeResults writes the guest's test results as go test -json events,
// each naming its package and keeping its Elapsed seconds (names[i] is the test binary of pkgs[i]).
func writeResults(file string, results []testResult, names []string, pkgs []goPackage) error {
	pkgOf := map[string]string{}
	for i, n := range names {
		pkgOf[n] = pkgs[i].ImportPath
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, r := range results {
		enc.Encode(struct {
			Action, Package, Test string
			Elapsed               float64
		}{r.action, pkgOf[r.bin], r.test, r.elapsed})
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	return nil
}
