# clickedge — the two commands a new user needs are `make run` and `make test`.
GO ?= go
FUZZTIME ?= 4s

.PHONY: run test unit fuzz vet build geoip bench

## run: fetch a free geo database (best effort), then start clickedge with embedded NATS and the demo catalog
run:
	-@$(MAKE) --no-print-directory geoip
	$(GO) run ./cmd/clickedge serve --demo

## test: every test — format, vet, unit, integration and end-to-end under -race, then each fuzz target briefly
test: vet unit fuzz

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 12m ./...

fuzz:
	FUZZTIME=$(FUZZTIME) bash .ci/fuzz.sh

build:
	$(GO) build -o clickedge ./cmd/clickedge

## geoip: fetch the CC0 ip-location-db country database into ./data/geoip (npm pack; no account needed)
geoip:
	@ls data/geoip/*.mmdb >/dev/null 2>&1 || bash deploy/geoip.sh ./data

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
