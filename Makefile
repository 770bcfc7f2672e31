# Developer entry points. Each target is a thin wrapper; the scripts in scripts/ hold the logic.

.PHONY: dev test lint openapi bench clean

## dev: start nats-server and jetway locally (auth off), Ctrl-C stops both
dev:
	scripts/dev.sh

## test: formatting, clippy, and the full test suite against a real nats-server
test:
	scripts/test.sh

## lint: formatting and clippy only
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## openapi: regenerate the committed OpenAPI document
openapi:
	@mkdir -p openapi
	cargo run --quiet -- openapi > openapi/openapi.json.tmp || { rm -f openapi/openapi.json.tmp; exit 1; }
	mv openapi/openapi.json.tmp openapi/openapi.json

## bench: run the load generator (pass flags with ARGS="...")
bench:
	scripts/bench.sh $(ARGS)

## clean: remove local nats-server data (.data)
clean:
	rm -rf .data
