//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// Ordinary work under the defaults (issue 13): a Go build against gRPC's
// module (whose credentials/ package the credentials/ rule matched), TLS
// with certifi's cacert.pem in a virtualenv (*.pem), and a Node project
// whose dependency ships a .env, a credentials/ directory and a test
// certificate. Each runs inside `aigate run` with the built-in defaults and
// must succeed; the same runs with the rules alone (no except_read) fail, so
// the test proves the exceptions and not an absent rule. Secrets next to
// the trees stay denied.
func TestE2EDefaultsKeepPublicTreesReadable(t *testing.T) {
	testutil.HostOnly(t) // needs go, python3, node and npm
	goBin := lookTool(t, "go")
	python := lookTool(t, "/usr/bin/python3")
	npm := lookTool(t, "npm")
	eachBackend(t, func(t *testing.T, w *world) {
		if w.backend == "lsm" {
			// skip-ok: the kernel matcher is compared with the reference one in the VM.
			t.Skip("the tool chains are on the host only; the kernel matcher is compared with the reference one in the VM (TestLSMExceptionsMatchPolicy)")
		}
		modcache := w.path("~/go/pkg/mod")
		goModule(t, w, goBin, modcache)
		warmBuildCache(t, w, goBin, modcache)
		site := w.path(".venv/lib/python3.11/site-packages")
		certifi(t, w, site)
		nodeProject(t, w)
		w.write(".env", "API_KEY=sk-e2e-tree-secret\n")
		w.write("~/.bash_history", "export TOKEN=sk-e2e-history\n")

		script := strings.Join([]string{
			"set -e",
			"cd gomod && " + goBin + " build -o /dev/null . && cd ..",
			"echo GO-OK",
			"PYTHONPATH=" + site + " " + python + ` -c "import certifi, ssl; n = len(ssl.create_default_context(cafile=certifi.where()).get_ca_certs()); assert n > 0; print('PY-OK', n)"`,
			"cd node && " + npm + " test --silent && cd ..",
			"! cat .env",
			"! cat ~/.bash_history",
			"echo SECRETS-DENIED",
		}, "\n")
		// go and npm inside use the sandboxes' own caches (run sets them):
		// the modules come from the user's module cache through a file
		// proxy, into ~/.cache/aigate/go-mod, excepted like ~/go/pkg/mod.
		// The caches the test's own environment names would be kept, with
		// a warning (CleanEnv already drops make's GOCACHE and GOMODCACHE).
		w.env = slices.DeleteFunc(w.env, func(kv string) bool {
			k, _, _ := strings.Cut(kv, "=")
			return k == "GOPATH" || k == "GOENV" || strings.EqualFold(k, "npm_config_cache")
		})
		w.env = append(w.env,
			"GOPROXY=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOSUMDB=off",
			"npm_config_update_notifier=false")

		// The rules without their exceptions break all three.
		w.config("deny_read: [credentials/, \"*.pem\", .env]\n")
		for _, step := range []string{
			"cd gomod && " + goBin + " build -o /dev/null .",
			"PYTHONPATH=" + site + " " + python + ` -c "import certifi, ssl; ssl.create_default_context(cafile=certifi.where())"`,
			"cd node && " + npm + " test --silent",
		} {
			if r := w.run(nil, "sh", "-c", step); r.code == 0 {
				t.Errorf("without except_read, %q succeeded: the tree does not exercise the exceptions\n%s", step, r)
			}
		}

		os.Remove(w.path("~/.aigate/config.yaml"))
		w.defaults()
		r := w.run(nil, "sh", "-c", script)
		if r.code != 0 {
			t.Fatalf("ordinary work failed under the defaults: %s", r)
		}
		for _, want := range []string{"GO-OK", "PY-OK", "NODE-OK", "SECRETS-DENIED"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %s: %s", want, r)
			}
		}
		if strings.Contains(r.stdout, "sk-e2e-") {
			t.Errorf("a secret leaked: %s", r)
		}
		for _, rel := range []string{".env", "~/.bash_history"} {
			if _, ok := findEvent(r.events, "read", w.path(rel)); !ok {
				t.Errorf("no read event for %s: %+v", rel, r.events)
			}
		}
		if len(r.events) != 2 {
			t.Errorf("want exactly the two secrets refused, got %+v", r.events)
		}
	})
}

func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testutil.SkipUnlessKernel(t, fmt.Sprintf("%s not installed: %v", name, err))
	}
	return p
}

// goModule writes a module that uses grpc and its credentials package and
// fills modcache with its dependencies, outside the sandbox, from the
// machine's module cache when it holds them (else the module proxy).
func goModule(t *testing.T, w *world, goBin, modcache string) {
	t.Helper()
	w.write("gomod/go.mod", "module example.com/grpcuse\n\ngo 1.22\n\nrequire google.golang.org/grpc v1.67.1\n")
	w.write("gomod/main.go", `package main

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	_ = grpc.WithTransportCredentials(insecure.NewCredentials())
	fmt.Println("grpc")
}
`)
	env := append(os.Environ(), "GOMODCACHE="+modcache, "GOFLAGS=-mod=mod -modcacherw", "GOTOOLCHAIN=local", "GOSUMDB=off")
	if out, err := exec.Command(goBin, "env", "GOMODCACHE").Output(); err == nil {
		if dl := filepath.Join(strings.TrimSpace(string(out)), "cache", "download"); dirExists(filepath.Join(dl, "google.golang.org", "grpc")) {
			env = append(env, "GOPROXY=file://"+dl+",https://proxy.golang.org")
		}
	}
	cmd := exec.Command(goBin, "mod", "tidy")
	cmd.Dir, cmd.Env = w.path("gomod"), env
	if out, err := cmd.CombinedOutput(); err != nil {
		testutil.SkipUnlessKernel(t, "cannot fetch google.golang.org/grpc for the test: "+err.Error()+"\n"+string(out))
	}
	if !dirExists(filepath.Join(modcache, "google.golang.org", "grpc@v1.67.1", "credentials")) {
		t.Fatal("the module cache lacks grpc's credentials package")
	}
}

// warmBuildCache builds the module outside the sandbox into the
// sandboxes' own build cache, so that the build inside compiles nothing.
// What the test proves is that the go command can read the module cache
// (grpc's credentials/ packages) under the defaults; a warm cache reads
// every source file all the same, to hash it for the cache key, so the
// build without the exceptions still fails. A cold one compiled grpc,
// protobuf, x/net and much of the standard library inside the bounded
// run: 45 s at load 6-10 (2.5 s with the cache warm), past runLimit
// (2 min) at load 13. The module
// cache is built at the path it has inside (the compile's cache key holds
// the package directory) and removed again: the build inside still fills
// its own from the user's through the file proxy.
func warmBuildCache(t *testing.T, w *world, goBin, modcache string) {
	t.Helper()
	own := w.path("~/" + policy.SandboxCacheDir)
	ownMod := filepath.Join(own, "go-mod")
	env := append(os.Environ(), "GOCACHE="+filepath.Join(own, "go-build"), "GOMODCACHE="+ownMod,
		"GOPROXY=file://"+filepath.Join(modcache, "cache", "download"), "GOFLAGS=-mod=mod",
		"GOTOOLCHAIN=local", "GOSUMDB=off")
	for _, args := range [][]string{{"build", "-o", "/dev/null", "."}, {"clean", "-modcache"}} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir, cmd.Env = w.path("gomod"), env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s outside the sandbox: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// certifi builds the part of a virtualenv that TLS needs, by hand (PyPI is
// not reachable from CI): site-packages/certifi with cacert.pem.
func certifi(t *testing.T, w *world, site string) {
	t.Helper()
	bundle, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		testutil.SkipUnlessKernel(t, fmt.Sprintf("no system CA bundle to copy: %v", err))
	}
	w.write(strings.TrimPrefix(site, w.proj+"/")+"/certifi/cacert.pem", string(bundle))
	w.write(strings.TrimPrefix(site, w.proj+"/")+"/certifi/__init__.py",
		"import os\n\ndef where():\n    return os.path.join(os.path.dirname(__file__), 'cacert.pem')\n")
}

// nodeProject is a project whose dependency ships files that name rules
// match; its test reads them.
func nodeProject(t *testing.T, w *world) {
	t.Helper()
	w.write("node/package.json", `{"name": "tree", "version": "1.0.0", "scripts": {"test": "node test.js"}, "dependencies": {"pubpkg": "1.0.0"}}`+"\n")
	w.write("node/node_modules/pubpkg/package.json", `{"name": "pubpkg", "version": "1.0.0", "main": "index.js"}`+"\n")
	w.write("node/node_modules/pubpkg/index.js", `const fs = require("fs");
module.exports = require("./credentials");
module.exports.env = fs.readFileSync(__dirname + "/.env", "utf8");
module.exports.cert = fs.readFileSync(__dirname + "/test/fixtures/server.pem", "utf8");
`)
	w.write("node/node_modules/pubpkg/credentials/index.js", "module.exports = { kind: 'anonymous' };\n")
	w.write("node/node_modules/pubpkg/.env", "EXAMPLE=1\n")
	w.write("node/node_modules/pubpkg/test/fixtures/server.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	w.write("node/test.js", `const p = require("pubpkg");
if (p.kind !== "anonymous" || !p.env.includes("EXAMPLE") || !p.cert.includes("CERTIFICATE")) process.exit(1);
console.log("NODE-OK");
`)
}
