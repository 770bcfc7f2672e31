# Developer entry points. Each target is a thin wrapper; the scripts in scripts/ hold the logic.

.PHONY: dev cluster test lint openapi bench clean

## dev: start nats-server and jetway locally (auth off), Ctrl-C stops both
dev:
	scripts/dev.sh

## cluster: 3 NATS nodes (R3), 3 jetway replicas and HAProxy on loopback; Ctrl-C stops all
##          (scripts/cluster.sh start|stop|status to run it in the background)
cluster:
	scripts/cluster.sh run

## test: formatting, clippy, and the full test suite against a real nats-server
test:
	scripts/test.sh

## lint: formatting, clippy and the module layering (scripts/check-layers.py)
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	python3 scripts/check-layers.py src

## openapi: regenerate the committed OpenAPI document
openapi:
	@mkdir -p openapi
	cargo run --quiet -- openapi > openapi/openapi.json.tmp || { rm -f openapi/openapi.json.tmp; exit 1; }
	mv openapi/openapi.json.tmp openapi/openapi.json

## bench: run the load generator (pass flags with ARGS="...")
bench:
	scripts/bench.sh $(ARGS)

## clean: remove local nats-server data (.data, make cluster's state included)
clean:
	rm -rf .data
