# validator fencing: make build | test | demo | lint | bench
GO      ?= go
BIN     ?= bin
GOFLAGS ?=
export GOFLAGS

.PHONY: build test test-short demo lint bench clean

build:
	$(GO) build -o $(BIN)/ ./coordinator/cmd/... ./sidecar/cmd/...

# Unit, integration (real embedded etcd) and end-to-end tests (built binaries
# as separate processes). The project's scripts install what they need.
test:
	$(GO) test -timeout 30m ./...

test-short:
	$(GO) test -short -timeout 10m ./...

# A local failover drill on embedded etcd.
demo:
	bash hack/demo.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

clean:
	rm -rf $(BIN) .demo
