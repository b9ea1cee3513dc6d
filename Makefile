# clickedge — the two commands a new user needs are `make run` and `make test`.
GO ?= go
FUZZTIME ?= 4s

.PHONY: run test unit fuzz vet build geoip bench bench-micro benchcheck modules chaos

## run: fetch a free geo database (best effort), then start clickedge with embedded NATS and the demo catalog
run:
	-@$(MAKE) --no-print-directory geoip
	$(GO) run ./cmd/clickedge serve --demo

## test: every test — format, vet, unit, integration and end-to-end under -race, the bench and deploy
## modules, every benchmark once (so each still compiles and runs), then each fuzz target briefly
test: vet unit modules benchcheck fuzz

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 12m ./...

fuzz:
	FUZZTIME=$(FUZZTIME) bash .ci/fuzz.sh

# The bench harness and the deploy checks are modules of their own: their
# dependencies (HdrHistogram; compose-go, Kubernetes types, BuildKit's
# Dockerfile parser) stay out of the product's go.mod. The deploy checks read
# every file of deploy/ with the tool that consumes it (see deploy/README.md).
modules:
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...
	cd deploy/check && CGO_ENABLED=0 $(GO) vet ./... && CGO_ENABLED=0 $(GO) test -count=1 ./...

benchcheck:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

build:
	$(GO) build -o clickedge ./cmd/clickedge

## geoip: fetch the CC0 ip-location-db country database into ./data/geoip (npm pack; no account needed)
geoip:
	@ls data/geoip/*.mmdb >/dev/null 2>&1 || bash deploy/geoip.sh ./data

## bench: the benchmark suite (bench/README.md): clickedge against bare fasthttp and nginx, pinned, 3 rounds → bench/RESULTS.md
bench:
	GO=$(GO) bash bench/run.sh

## bench-micro: the go test -bench micro-benchmarks beside the code
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## chaos: the fault suite: real edge, worker and nats-server processes under kill -9, NATS outages, an
## outbox cap, a 3-node cluster losing nodes, a rebuild and a clock jump; prints one table.
## CHAOS_SECONDS=60 make chaos gives the full-length figures (about 9 minutes on 2 cores)
CHAOS_SECONDS ?= 8
chaos:
	CLICKEDGE_CHAOS=1 CHAOS_SECONDS=$(CHAOS_SECONDS) $(GO) test -count=1 -timeout 30m -run '^TestChaos$$' -v ./cmd/clickedge/
