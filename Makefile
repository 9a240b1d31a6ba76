# FluxForge make targets. `make test` is what CI runs.
GO      ?= go
CPS     ?= 1
PKGS    ?= ./...
SCENARIO ?= agent-flap
SEED    ?= 1

.PHONY: all build test test-short vet lint sim cluster bench bench-core bench-sim bench-api fmt clean check-deploy soak soak-long-cut soak-5k soak-throughput fuzz swarm

all: build

build:
	$(GO) build $(PKGS)

vet:
	$(GO) vet $(PKGS)

# staticcheck runs as a pinned tool through the module proxy (go run
# pkg@version): it is not a dependency of the module.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

# The full suite with the race detector: unit, property (rapid), simulator
# scenarios for seeds 1..20, and integration tests against real processes.
test: lint
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Replay one runbook incident in the simulator.
sim:
	$(GO) run ./cmd/sim -scenario=$(SCENARIO) -seed=$(SEED)

# A local cluster: cp on :8080 and six agents in three zones; Ctrl-C stops it.
# The cp's state persists in .cluster-data between runs; rm -rf .cluster-data
# wipes it.
cluster:
	$(GO) run ./cmd/cluster -cps $(CPS)

# Swarm simulation: random fleets and fault mixes; SWARM=10000 is the nightly size.
SWARM ?= 1000
swarm:
	$(GO) run ./cmd/sim -swarm $(SWARM) -seed $(SEED)

bench: bench-core bench-sim bench-api

bench-core:
	$(GO) test -run '^$$' -bench . -benchmem ./core/

bench-sim:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x ./sim/

bench-api:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./cmd/fluxctl/ ./cp/

# The soak: a real cp with 1,000 agent clients on loopback, one zone cut off
# and restored: Full (2 minutes, a 20s cut) then LongCut (8s tasks, a 15s
# cut longer than the heartbeat timeout plus the loss grace: no task may run
# twice at once). About 5 minutes. A 15-second version runs in `make test`.
soak:
	$(GO) test -count=1 -run '^TestSoak$$' -v -timeout 30m ./soak/ -args -soak -soak-long-cut

# LongCut alone (about 2 minutes).
soak-long-cut:
	$(GO) test -count=1 -run '^TestSoak$$' -v -timeout 20m ./soak/ -args -soak-long-cut

# LongCut with 5,000 agents in one process: two file descriptors an agent
# (the soft limit is raised to 12000 if it is lower and the hard limit allows) and more CPU than
# CI has. Not in make test.
soak-5k:
	[ "$$(ulimit -n)" = unlimited ] || [ "$$(ulimit -n)" -ge 12000 ] || ulimit -n 12000 2>/dev/null || true; $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 30m ./soak/ -args -soak-5k

# The issue's throughput floor: a durable cp (in a process of its own, on a
# temporary data dir) with 1,000 light agents × 4 slots on HTTP/1.1 burns
# down 200,000 no-op tasks posted in batches; prints tasks/s and the cp's
# and the fleet's CPU per task. THROUGHPUT_ARGS adds flags, e.g.
# -soak-throughput-heartbeat 5s -soak-throughput-queue 200000,
# -soak-throughput-in-memory, -soak-throughput-http2, -soak-cpuprofile /tmp/cp.pprof.
THROUGHPUT_ARGS ?=
soak-throughput:
	$(GO) test -count=1 -run '^TestThroughput$$' -v -timeout 10m ./soak/ -args -soak-throughput $(THROUGHPUT_ARGS)

# Every fuzz target for FUZZTIME each (the seed corpora run in `make test`).
FUZZTIME ?= 60s
FUZZ_TARGETS = net:FuzzDecodeMessage net:FuzzFastDecoders cp:FuzzSubmit cp:FuzzHeartbeat cp:FuzzAdminMode cp:FuzzPurge cp:FuzzQuery agent:FuzzAgentProtocol
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t#*:}; \
		echo "== $$fn ($$pkg)"; $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg/; done

# Alert rules: promtool check + rule unit tests (installs promtool if missing).
check-deploy:
	bash deploy/check.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
