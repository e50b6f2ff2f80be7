# validator fencing: make build | test | demo | lint | bench
GO      ?= go
BIN     ?= bin
GOFLAGS ?=
export GOFLAGS
# Go 1.27.3: Go 1.26.8's net/http has a known HTTP/2 server crash. The go
# command fetches this toolchain from the module proxy (about 10 s, once).
export GOTOOLCHAIN := go1.27.3

.PHONY: build test test-short tools demo lint bench bench-signing clean chart-examples vulncheck image

build:
	$(GO) build -o $(BIN)/ ./coordinator/cmd/... ./sidecar/cmd/... ./internal/drill/cmd/fence-drill

# Unit, integration (real embedded etcd) and end-to-end tests (built binaries
# as separate processes), and the chart and client-go tests on a real
# kube-apiserver. The project's scripts build what they need once and cache
# it: kube-apiserver v1.37.2 (about 7 minutes on an idle 2-core machine),
# helm v3.22.0 (about 4 minutes) and geth v1.13.15 for the Clique tests in
# e2e/ (about 5 minutes). Before them: govulncheck and the container image
# (the two targets below).
test: tools vulncheck image
	FENCE_KUBE_APISERVER=$${FENCE_KUBE_APISERVER:-$$(hack/kube-apiserver/build.sh)} \
	FENCE_GETH=$${FENCE_GETH:-$$(hack/geth.sh)} \
		$(GO) test -timeout 40m ./...

tools:
	@hack/kube-apiserver/build.sh >/dev/null
	@hack/helm.sh version >/dev/null
	@hack/geth.sh >/dev/null

# govulncheck against an offline copy of the Go vulnerability database (the
# newest golang.org/x/vulndb from the module proxy): fails when the code calls
# a vulnerable function, prints the rest. Cold 3 to 8 minutes, then 20 to 45 s.
vulncheck:
	hack/govulncheck.sh

# Build the image (Dockerfile target prebuilt, buildah from Debian, installed
# if missing) and check its user, command and binaries. SKIP only where
# buildah cannot be installed. Cold 6 to 7 minutes, then 4 to 11 s.
image:
	hack/image.sh

test-short:
	$(GO) test -short -timeout 10m ./...

# A local failover drill on embedded etcd (bin/fence-drill, twice: cooperative,
# then partitioned).
demo:
	bash hack/demo.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

# The signing targets of docs/benchmarks.md, each printed as a TARGET line
# with its baseline from the same run (strict and lease mode at 1 and 64
# callers; strict mode on three etcd members in three regions behind
# delaying proxies, which builds e2e/cmd/fence-etcd). COUNT repeats it
# (each count pairs its own baselines) and prints the load average before
# each; about 2 minutes a count on a 2-core machine.
COUNT ?= 1
bench-signing:
	$(GO) build -o $(BIN)/fence-etcd ./e2e/cmd/fence-etcd
	$(GO) test -c -o $(BIN)/sidecar.bench.test ./sidecar
	cd sidecar && for i in $$(seq $(COUNT)); do uptime; FENCE_ETCD=$(abspath $(BIN))/fence-etcd $(abspath $(BIN))/sidecar.bench.test -test.run '^$$' -test.bench 'LeaseMode|StrictMode|StrictRegions' -test.benchtime 2s -test.timeout 30m || exit 1; done; uptime

# Re-render the committed chart examples in docs/examples after a chart change.
chart-examples:
	$(GO) test ./charts -run TestCommittedExamplesAreCurrent -update

clean:
	rm -rf $(BIN) .demo

# A long run of the end-to-end fault suite with one seed (docs/drill.md):
#   make soak SEED=123456 DURATION=30m [SOAK=TestChaosLeaseMode] [LANES=timing,sidecar]
# SEED empty draws one (printed); the same seed replays the same schedule.
# LANES runs only those lanes of it (network, coord, sidecar, timing: late,
# duplicated and reordered messages); empty runs all four.
SEED     ?=
DURATION ?= 10m
SOAK     ?= TestChaos
LANES    ?=
.PHONY: soak
soak:
	FENCE_E2E_SEED=$(SEED) FENCE_E2E_DURATION=$(DURATION) FENCE_E2E_LANES=$(LANES) $(GO) test -v -count=1 -run '^$(SOAK)$$' -timeout 24h ./e2e/
