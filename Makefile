GO        ?= go
FUZZTIME  ?= 5m
BENCHTIME ?= 1s

.PHONY: test vet fmt-check cross bench fuzz compare reference soak test-netns

## test: vet, gofmt check and the race-enabled test suite (what CI runs).
## Packages run one at a time (-p 1): the reaping tests assert the bounds the
## issues name (50 ms, 100 ms), and two packages' clusters on two cores at
## once would measure each other.
test: vet fmt-check cross
	$(GO) test -race -count=1 -p 1 ./...
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

vet:
	$(GO) vet ./...
	cd bench/grpcbase && $(GO) vet ./...   # its own module: the gRPC baseline make compare builds

## cross: the platforms README.md lists still build: everything on
## linux/amd64, linux/arm64 and darwin; the client side (coord and what it
## imports) on windows too
cross:
	GOOS=linux GOARCH=arm64 $(GO) build ./...
	GOOS=darwin GOARCH=arm64 $(GO) build ./...
	GOOS=windows GOARCH=amd64 $(GO) build ./coord ./frame ./secure ./reaper

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

## test-netns: 3 nodes and a coordinator in their own network namespaces,
## with loss and delay on the links (root; skips with a message otherwise)
test-netns:
	REXI_NETNS=1 $(GO) test -count=1 -timeout 10m -v ./integration/netns/

## bench: every benchmark, with allocations
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

## fuzz: run every fuzzer for FUZZTIME each (default 5m): the frame decoder,
## a node's turns (past and in the handshake), a client reading a node's
## output, sealed records, the Noise handshake, the rows handler's arguments
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./frame
	$(GO) test -run '^$$' -fuzz '^FuzzLoopTurn$$' -fuzztime $(FUZZTIME) ./node
	$(GO) test -run '^$$' -fuzz '^FuzzHandshakeTurn$$' -fuzztime $(FUZZTIME) ./node
	$(GO) test -run '^$$' -fuzz '^FuzzNodeOutput$$' -fuzztime $(FUZZTIME) ./coord
	$(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) ./secure
	$(GO) test -run '^$$' -fuzz '^FuzzHandshake$$' -fuzztime $(FUZZTIME) ./secure
	$(GO) test -run '^$$' -fuzz '^FuzzParseRows$$' -fuzztime $(FUZZTIME) ./handlers

## compare: rexi vs the gRPC-go baseline, every workload, COMPARE_ROUNDS rounds
## (default 3) with the medians in the table (bench/README.md)
COMPARE_ROUNDS ?= 3
compare:
	mkdir -p bin
	$(GO) build -o bin/rexinode ./cmd/rexinode
	cd bench/grpcbase && $(GO) build -o ../../bin/grpcbase .
	$(GO) run ./bench/compare -rexinode bin/rexinode -grpcbase bin/grpcbase -rounds $(COMPARE_ROUNDS) $(COMPARE_FLAGS)

## reference: W-cast and W-stream on a minimal gnet node and coordinator, none of rexi:
## what the transport allows on this host (bench/README.md)
reference:
	mkdir -p bin
	$(GO) build -o bin/reference ./bench/reference
	bin/reference

## soak: the long runs (about 16 minutes): hostile input (60 s), load (50
## coordinators, 60 s), every way a coordinator ends with node kills (2 min),
## and memory over 10 minutes of random endings (heap after GC, start and end,
## for the coordinator and every node)
soak:
	REXI_SOAK=1 REXI_NORACE=1 $(GO) test -count=1 -timeout 30m -run 'TestHostileInput|TestLoad|TestEveryWayACoordinatorEnds|TestMemoryFlatOverRandomEndings' -v ./integration/
