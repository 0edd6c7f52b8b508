# aigate: kernel-enforced sandbox for AI coding agents.
# `make help` lists the targets.

GO        ?= go
CLANG     ?= clang-14
BIN       ?= bin/aigate
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/aigate-dev/aigate/internal/cli.version=$(VERSION) -X github.com/aigate-dev/aigate/internal/cli.commit=$(COMMIT)
FUZZTIME  ?= 15s
VMKERNEL  ?= 6.1
# Kernels `make vmtest` boots in turn (Debian cloud kernel series, or
# linux-image-* package names); a failure names the kernel.
VMKERNELS ?= 6.1 6.12
# Packages to test inside the VM; empty means every package whose tests
# call testutil.SkipUnlessLSM (vmtest finds them).
VMPKGS    ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## install the Debian packages the build and tests need (root)
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		clang-14 llvm-14 bpftool qemu-system-x86 busybox-static cpio iproute2 make git ca-certificates
	$(GO) mod download

.PHONY: build
build: ## build bin/aigate (no clang needed: BPF objects are committed)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/aigate

.PHONY: demo
demo: build ## the main job: `aigate run -- cat .env` in a scratch project, refused by the kernel
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && cd "$$d" && \
	echo 'OPENAI_API_KEY=sk-demo-not-a-real-key' > .env && \
	echo "$$ cd $$d && aigate run -- cat .env" && \
	{ $(CURDIR)/$(BIN) run -- cat .env > out.txt; rc=$$?; cat out.txt; } ; \
	echo "(cat exited with status $$rc)"; \
	if grep -q sk-demo out.txt; then echo "demo: FAILED, the secret was readable"; exit 1; fi; \
	echo "demo: the secret stayed unreadable inside the sandbox"

.PHONY: generate
generate: ## rebuild the BPF objects and generated Go with clang 14
	BPF_CLANG=$(CLANG) $(GO) generate ./internal/loader/...

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
	AIGATE_REQUIRE_KERNEL=1 $(GO) test -race -count=1 ./...

.PHONY: test-escape
test-escape: ## the escape suite: attacks from inside a sandbox, as an unprivileged user (root; skips fail)
	AIGATE_REQUIRE_KERNEL=1 $(GO) test -count=1 -v -run '^TestEscape' ./internal/escape/

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME
	@for f in FuzzParse FuzzCheckPattern FuzzEndpoint FuzzCompile; do \
		echo "fuzz $$f for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) ./internal/policy || exit 1; \
	done

.PHONY: vmtest
vmtest: build ## BPF-LSM tests inside a QEMU VM with lsm=bpf, once per kernel of VMKERNELS (skips fail)
	@failed=""; for k in $(VMKERNELS); do \
		echo "vmtest: ==== kernel $$k"; start=$$(date +%s); \
		AIGATE_REQUIRE_KERNEL=1 AIGATE_REQUIRE_LSM=1 $(GO) run ./vmtest --kernel $$k --timeout 20m --host-root --bin $(BIN) $(addprefix --pkg ,$(VMPKGS)) -- -test.v -test.count=1 \
			|| failed="$$failed $$k"; \
		echo "vmtest: ==== kernel $$k done in $$(( $$(date +%s) - start ))s"; \
	done; \
	if [ -n "$$failed" ]; then echo "vmtest: FAILED on kernel(s):$$failed"; exit 1; fi; \
	echo "vmtest: passed on kernels $(VMKERNELS)"

.PHONY: vmtest-smoke
vmtest-smoke: ## the VM harness's own smoke tests (boots QEMU)
	AIGATE_VMTEST_SMOKE=1 $(GO) test -count=1 -run Smoke -v ./vmtest

.PHONY: bench
bench: ## overhead as ratios against no aigate, side by side, into bench/results.md (root; BENCHFLAGS=--no-vm)
	GO=$(GO) VMKERNEL=$(VMKERNEL) bench/run.sh $(BENCHFLAGS)

.PHONY: check
check: lint test-kernel fuzz vmtest-smoke vmtest ## everything CI runs: lint, all tests as root, fuzz, VM tests
