# The two commands a newcomer needs: `make run` and `make test`. Each does its own set-up.
SWIFT ?= swift
STATE_DIR ?= ./.leasehold
HTTP ?= 127.0.0.1:8080

.PHONY: run test test-swift test-nonroot test-interop test-interop-nonroot test-interop-mcp2 test-client test-fuzz fuzz soak bench build clean

build:
	scripts/bootstrap.sh
	$(SWIFT) build

DEMO_CONFIG ?= $(STATE_DIR)-demo.yaml
# More `serve` flags, e.g. SERVE_FLAGS="--metrics 127.0.0.1:9464 --otlp-endpoint http://127.0.0.1:4318 --log-format json".
SERVE_FLAGS ?=

## Leasehold with its embedded default: SQLite state, a generated dev key, demo tenants acme and globex,
## and the 500-tool knowledge-base server (examples/kb_server.py) as upstream `vivi`, one process per tenant.
run: build
	@mkdir -p $(dir $(DEMO_CONFIG))
	@printf '%s\n' "servers:" \
	  "  - id: vivi" \
	  "    transport: stdio" \
	  "    command: [$(CURDIR)/.venv-examples/bin/python, $(CURDIR)/examples/kb_server.py]" \
	  "    mounts: [$(CURDIR)/examples, $(CURDIR)/.venv-examples]" \
	  "    isolation: tenant" \
	  "    workspace: true" \
	  "    tier: upstream" > $(DEMO_CONFIG)
	.build/debug/leasehold serve --demo --http $(HTTP) --state-dir $(STATE_DIR) --policies ./policies --config $(DEMO_CONFIG) $(SERVE_FLAGS)

## Every test: Swift unit tests, Python MCP interop and black-box attack tests (mcp 1.x, then 2.x), the Python
## client package, and a benchmark smoke run.
test:
	scripts/bootstrap.sh --python
	$(SWIFT) build --build-tests
	$(MAKE) test-swift test-nonroot test-interop test-interop-nonroot test-interop-mcp2 test-client test-fuzz
	Benchmarks/run.sh --smoke

## In a scratch TMPDIR removed afterwards: the tests leave hundreds of temporary directories.
test-swift:
	scripts/with-scratch-tmpdir.sh $(SWIFT) test --skip-build

## Production runs Leasehold unprivileged: run the same Swift tests again as a non-root user.
test-nonroot:
	scripts/test-nonroot.sh

test-interop:
	.venv/bin/pytest Tests/Interop -q -rsx

## The Python client package (clients/python) against the real binary; its token-exchange tests alone:
## .venv/bin/pytest clients/python/tests/test_token_exchange.py
test-client:
	.venv/bin/pytest clients/python/tests -q -rsx

## The black-box attack suites again with an unprivileged runner.
test-interop-nonroot:
	scripts/test-interop-nonroot.sh

## The interop tests that use the Python MCP client again, with its 2.x line (.venv-mcp2).
test-interop-mcp2:
	scripts/test-interop-mcp2.sh

## Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of the parsers that read untrusted bytes,
## FUZZ_SECONDS per target (default 60); a crash fails it and leaves its input in .build-fuzz/crashes/.
## FUZZ_TARGETS names some (default: all). claims, config_yaml, hot_edge, jsonrpc_edge and policy_yaml
## build Fuzz/Package.swift's dependencies first (.build-fuzz-pkg/; minutes the first time).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_TARGETS)

## The short fuzz pass `make test` runs: 10 s per target, the per-file targets only (the package
## targets need jwt-kit, swift-crypto, Yams and the MCP SDK built first, minutes of CI; `make fuzz`
## runs them).
FUZZ_CHEAP = apply_patch frame_codec gitignore_glob tool_pattern unified_diff
test-fuzz:
	FUZZ_SECONDS=10 scripts/fuzz.sh $(FUZZ_CHEAP)

## Soak: a mixed workload for SOAK_SECONDS (default 600, at most 3600) with the runner's RSS,
## descriptors, threads and workers sampled; fails on growth that does not level off. Writes the
## soak section of RELIABILITY.md. Not part of `make test`.
SOAK_SECONDS ?= 600
soak:
	scripts/bootstrap.sh --python
	$(SWIFT) build
	SOAK_SECONDS=$(SOAK_SECONDS) .venv/bin/python Benchmarks/soak.py --reliability RELIABILITY.md

## Full benchmarks with peers; writes BENCHMARKS.md.
bench:
	scripts/bootstrap.sh
	Benchmarks/run.sh

clean:
	rm -rf .build $(STATE_DIR) $(STATE_DIR)-workspaces
