# aigate: kernel-enforced sandbox for AI coding agents.
# `make help` lists the targets.

# Go: the one on PATH, else the usual install places. sudo's secure_path
# drops /usr/local/go/bin (where Go's tarball goes), so `sudo make demo`
# would not find it on PATH alone.
GO        ?= $(or $(shell command -v go 2>/dev/null),$(firstword $(wildcard /usr/local/go/bin/go /usr/lib/go/bin/go /snap/bin/go)),go)
CLANG     ?= clang-14
STRIP     ?= llvm-strip-14
BIN       ?= bin/aigate
# Without a tag the version is "dev" and the commit says the rest (with
# --always, describe would print the commit as the version too).
VERSION   ?= $(shell git -c safe.directory='$(CURDIR)' describe --tags --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git -c safe.directory='$(CURDIR)' rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/aigate-dev/aigate/internal/cmdutil.Version=$(VERSION) -X github.com/aigate-dev/aigate/internal/cmdutil.Commit=$(COMMIT)
FUZZTIME  ?= 15s
VMKERNEL  ?= 6.1
# Kernels `make vmtest` boots in turn (Debian cloud kernel series, or
# linux-image-* package names); a failure names the kernel.
VMKERNELS ?= 6.1 6.12
# Packages to test inside the VM; empty means every package whose tests
# call testutil.SkipUnlessLSM (vmtest finds them).
VMPKGS    ?=
# Kernels of VMKERNELS whose guest runs the fanotify variant of every
# escape test (the host runs them all too). The other guests run the lsm
# variants and only the fanotify ones whose outcome depends on the kernel
# (AIGATE_ESCAPE_VM_FANOTIFY=kernel, internal/escape): on 6.12 the rest
# took 10 of its 48 minutes and proved what the host and 6.1 prove.
VMFANOTIFY_ALL ?= 6.1

# Where the test runs of make check keep their go test -json events, one
# file per environment, for check-skips.
TESTLOGS  ?= .testlogs
RECORD    := $(GO) run ./skipcheck record

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Run as root (sudo or a root shell), a build must not leave root-owned
# files where the user's later `make build` writes: bin/ goes back to the
# checkout's owner, and Go's caches stay in root's home even when sudo kept
# the user's HOME.
ROOTRUN   := $(filter 0,$(shell id -u))
ifneq ($(ROOTRUN),)
ifneq ($(SUDO_USER),)
ROOTHOME  := $(shell getent passwd 0 | cut -d: -f6)
export GOCACHE    ?= $(ROOTHOME)/.cache/go-build
export GOMODCACHE ?= $(ROOTHOME)/go/pkg/mod
endif
endif

.PHONY: deps
deps: ## install the Debian packages the build and tests need (root)
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		clang-14 llvm-14 libbpf-dev bpftool qemu-system-x86 busybox-static cpio iproute2 make git ca-certificates \
		curl gdb tmux openssh-client
	$(GO) mod download

# The demo needs only Go, make and the certificates to fetch Go modules:
# install those alone, and only when one is missing.
.PHONY: deps-demo
deps-demo: ## install only what `make demo` needs (root; skipped when present)
	@command -v $(GO) >/dev/null 2>&1 || { echo "Go >= 1.26 not found (looked on PATH and in /usr/local/go/bin): install it from https://go.dev/dl, then run this again"; exit 1; }
	@if [ -n "$(ROOTRUN)" ] && ! dpkg-query -W -f='$${Status}' ca-certificates 2>/dev/null | grep -q 'ok installed'; then \
		echo "installing ca-certificates (needed to download Go modules)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates; \
	fi

.PHONY: build
build: ## build bin/aigate (no clang needed: BPF objects are committed)
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/aigate
ifneq ($(ROOTRUN),)
	@owner=$$(stat -c %u:%g .) && [ "$$owner" = 0:0 ] || chown "$$owner" $(dir $(BIN)) $(BIN)
endif

# The escape suite's 32-bit program (TestEscapeCompatPty): vmtest copies it
# into the guest, which has no Go toolchain to build it.
PTY32     := bin/aigate-pty32
.PHONY: pty32
pty32: ## build bin/aigate-pty32, the escape suite's 32-bit pty program, for the VM
	CGO_ENABLED=0 GOARCH=386 $(GO) build -trimpath -buildvcs=false -o $(PTY32) ./internal/escape/testdata/pty32
ifneq ($(ROOTRUN),)
	@owner=$$(stat -c %u:%g .) && [ "$$owner" = 0:0 ] || chown "$$owner" $(dir $(PTY32)) $(PTY32)
endif

.PHONY: demo
demo: deps-demo build ## the main job: `aigate run -- cat .env` in a scratch project, refused by the kernel
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && cd "$$d" && \
	echo 'OPENAI_API_KEY=sk-demo-not-a-real-key' > .env && \
	if [ -n "$$SUDO_UID" ] && [ "$$(id -u)" = 0 ]; then chown -R "$$SUDO_UID:$${SUDO_GID:-$$SUDO_UID}" "$$d"; fi && \
	echo "$$ cd $$d && aigate run -- cat .env" && \
	{ $(CURDIR)/$(BIN) run -- cat .env > out.txt; rc=$$?; cat out.txt; } ; \
	echo "(cat exited with status $$rc)"; \
	if grep -q sk-demo out.txt; then echo "demo: FAILED, the secret was readable"; exit 1; fi; \
	if [ "$$rc" != 1 ]; then echo "demo: FAILED: cat did not run in a sandbox (aigate's exit status $$rc, the reason is above; run it as root: sudo make demo)"; exit 1; fi; \
	echo "demo: the secret stayed unreadable inside the sandbox"

.PHONY: generate
generate: ## rebuild the BPF objects and generated Go with clang 14
	BPF2GO_CC=$(CLANG) BPF2GO_STRIP=$(STRIP) $(GO) generate ./internal/loader/...

.PHONY: check-generate
check-generate: generate ## fail if the committed BPF objects differ from their sources
	@git diff --exit-code --stat -- internal/loader || { echo "generated BPF files are stale: run 'make generate' and commit"; exit 1; }

.PHONY: fmt
fmt: ## format Go and BPF C sources
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## vet for linux and darwin, check formatting
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	GOOS=darwin GOARCH=arm64 $(GO) build ./...

.PHONY: test
test: ## unit tests (no root needed; kernel tests skip with a reason)
	$(GO) test -race -count=1 ./...

.PHONY: test-kernel
test-kernel: ## kernel tests on this host as root: cgroups, fanotify, sock_addr (skips fail)
	AIGATE_REQUIRE_KERNEL=1 $(RECORD) -o $(TESTLOGS)/host.json -- $(GO) test -json -race -count=1 ./...

.PHONY: test-escape
test-escape: ## the escape suite: attacks from inside a sandbox, as an unprivileged user (root; skips fail)
	AIGATE_REQUIRE_KERNEL=1 $(GO) test -count=1 -v -run '^TestEscape' ./internal/escape/

# The Claude Code CLI that `make e2e` runs, installed from npm once per
# version into E2E_CACHE (kept between runs).
CLAUDE_CODE_VERSION ?= 2.1.332
E2E_CACHE ?= $(HOME)/.cache/aigate-e2e
CLAUDE_BIN := $(E2E_CACHE)/claude-code-$(CLAUDE_CODE_VERSION)/node_modules/@anthropic-ai/claude-code-linux-x64/claude

$(CLAUDE_BIN):
	mkdir -p $(E2E_CACHE)/claude-code-$(CLAUDE_CODE_VERSION)
	npm install --no-audit --no-fund --ignore-scripts --prefix $(E2E_CACHE)/claude-code-$(CLAUDE_CODE_VERSION) \
		@anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) @anthropic-ai/claude-code-linux-x64@$(CLAUDE_CODE_VERSION)
	test -x $@

.PHONY: e2e
e2e: build $(CLAUDE_BIN) ## the real Claude Code CLI (claude -p, its interface in tmux, its first start on a stand-in internet) under aigate against a prompt-injected mock API (root)
	AIGATE_REQUIRE_KERNEL=1 AIGATE_REQUIRE_CLAUDE=1 AIGATE_E2E_CLAUDE=$(CLAUDE_BIN) AIGATE_BIN=$(CURDIR)/$(BIN) \
		$(RECORD) -v -o $(TESTLOGS)/e2e.json -- $(GO) test -json -count=1 -run '^TestE2EClaude' ./internal/e2e/

.PHONY: fuzz
# No minimizing (FUZZMINIMIZE=0): go test spends up to 60 s shrinking each
# input that finds new coverage, on the only worker and with no executions
# counted meanwhile, so most targets stopped after 3-6 s and a 15 s run of
# FuzzParse (whose seeds are kilobytes of YAML, each run ~10 ms) ran 19
# inputs. A failing input is kept as found; go test -run=FuzzX/ID
# reproduces it, and FUZZMINIMIZE=60s shrinks it. The workers are
# GOMAXPROCS again (-parallel=1 was for a FuzzRequest hang with two that
# did not recur in 7 runs of 15 and 90 s).
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context
# deadline exceeded" as -fuzztime ends, a race in its own shutdown
# (golang/go#75804, fixed in Go 1.27) that CI hit once on FuzzParse: no
# input failed and none is written. A run that fails with exactly that and
# writes no failing input is said and not counted; any other failure is.
FUZZMINIMIZE ?= 0
fuzz: ## run every fuzz target (found in the sources) for FUZZTIME
	@set -e; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for f in $$(grep -rl --include='*_test.go' '^func Fuzz' internal); do \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz $$t in ./$$(dirname $$f) for $(FUZZTIME)"; \
			rc=0; $(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZE) ./$$(dirname $$f) > $$out 2>&1 || rc=$$?; \
			cat $$out; \
			if [ $$rc -ne 0 ]; then \
				if [ "$$(grep -c '^--- FAIL' $$out)" = 1 ] && grep -qx '    context deadline exceeded' $$out && ! grep -q 'Failing input written' $$out; then \
					echo "fuzz: $$t stopped on Go's fuzz-coordinator race at the end of -fuzztime (golang/go#75804): no input failed, not counted"; \
				else exit $$rc; fi; \
			fi; \
		done; \
	done

.PHONY: mutate
mutate: ## break each security check on purpose (mutate/breaks/), fail if the tests miss one (root; MUTATEFLAGS=-tier ci)
	AIGATE_REQUIRE_KERNEL=1 $(GO) run ./mutate $(MUTATEFLAGS)

.PHONY: mutate-ci
mutate-ci: ## the breaks marked tier: ci (what make check runs; a few minutes)
	$(MAKE) mutate MUTATEFLAGS='-tier ci'

# The guest gets the host's userland (--host-root) and the Claude Code CLI
# of `make e2e` (--host-dir): internal/e2e runs it on BPF LSM there. The
# kernels boot side by side, each line of output marked with its kernel:
# a guest's tests run one at a time and mostly keep one of its two vCPUs
# busy, so two guests on this 2-CPU machine take about as long as the
# slower one alone (one after the other they took 55-70 of CI's 90
# minutes). Each kernel's bound leaves room for both running at once.
.PHONY: vmtest
vmtest: build pty32 $(CLAUDE_BIN) ## BPF-LSM tests inside QEMU VMs with lsm=bpf, one per kernel of VMKERNELS side by side, the Claude Code e2e included (skips fail)
	@mkdir -p $(TESTLOGS); start=$$(date +%s); \
	for k in $(VMKERNELS); do \
		rm -f $(TESTLOGS)/vm-$$k.rc; \
		case " $(VMFANOTIFY_ALL) " in *" $$k "*) fan=all ;; *) fan=kernel ;; esac; \
		( AIGATE_REQUIRE_KERNEL=1 AIGATE_REQUIRE_LSM=1 $(GO) run ./vmtest --kernel $$k --timeout 60m --host-root --bin $(BIN) --bin $(PTY32) --json $(TESTLOGS)/vm-$$k.json \
			--host-dir $(dir $(CLAUDE_BIN)) --env AIGATE_E2E_CLAUDE=$(CLAUDE_BIN) --env AIGATE_REQUIRE_CLAUDE=1 --env AIGATE_ESCAPE_VM_FANOTIFY=$$fan \
			$(addprefix --pkg ,$(VMPKGS)) -- -test.v -test.count=1 2>&1; \
		  echo $$? > $(TESTLOGS)/vm-$$k.rc; \
		  echo "vmtest: ==== kernel $$k done in $$(( $$(date +%s) - start ))s" ) | sed -u "s/^/[$$k] /" | tee $(TESTLOGS)/vm-$$k.log & \
	done; \
	wait; failed=""; \
	for k in $(VMKERNELS); do [ "$$(cat $(TESTLOGS)/vm-$$k.rc 2>/dev/null)" = 0 ] || failed="$$failed $$k"; done; \
	if [ -n "$$failed" ]; then \
		for k in $$failed; do grep -a '^\[[^]]*\] vmtest: \(failed\|FAILED\)' $(TESTLOGS)/vm-$$k.log; done; \
		echo "vmtest: FAILED on kernel(s):$$failed"; exit 1; fi; \
	echo "vmtest: passed on kernels $(VMKERNELS) in $$(( $$(date +%s) - start ))s"

.PHONY: vmtest-smoke
vmtest-smoke: ## the VM harness's own smoke tests (boots QEMU)
	AIGATE_VMTEST_SMOKE=1 $(RECORD) -v -o $(TESTLOGS)/vmtest-smoke.json -- $(GO) test -json -count=1 -run Smoke ./vmtest

.PHONY: bench
bench: ## overhead as ratios, side by side: bench/results.md, start-up against bwrap and srt, rule and sandbox count, real work, into docs/performance.md (root; BENCHFLAGS=--no-vm, BEFORE=gitref)
	GO=$(GO) VMKERNEL=$(VMKERNEL) bench/run.sh $(BENCHFLAGS)
	GO=$(GO) bench/startup.sh $(if $(BEFORE),--before $(BEFORE))
	GO=$(GO) bench/scale.sh
	GO=$(GO) bench/realwork.sh

# bench/startup.sh replaces only its own sections of docs/performance.md.
.PHONY: bench-startup
bench-startup: ## only the start-up against bwrap and srt, into docs/performance.md (root; BEFORE=gitref adds aigate built from it)
	GO=$(GO) bench/startup.sh $(if $(BEFORE),--before $(BEFORE))

.PHONY: bench-realwork
bench-realwork: ## only real work (go build, git, node --test, claude -p) bare, under aigate, bwrap and srt, into docs/performance.md (root)
	GO=$(GO) bench/realwork.sh

.PHONY: check-skips
check-skips: ## fail if a test skipped in every run of make check (host, e2e, smoke, each VM kernel) and is not in skipcheck/allow.txt
	$(GO) run ./skipcheck check -allow skipcheck/allow.txt $(TESTLOGS)/host.json $(TESTLOGS)/e2e.json $(TESTLOGS)/vmtest-smoke.json $(foreach k,$(VMKERNELS),$(TESTLOGS)/vm-$(k).json)

.PHONY: clean-testlogs
clean-testlogs:
	rm -rf $(TESTLOGS)

.PHONY: check
check: lint clean-testlogs test-kernel e2e fuzz vmtest-smoke vmtest check-skips mutate-ci ## everything CI runs: lint, all tests as root, the Claude Code e2e, fuzz, VM tests, no test skipped everywhere, mutations
