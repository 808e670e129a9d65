# VedaRT: two commands set everything up on a fresh machine.
#   make demo   builds the Python package and runs its tour (`python -m vedart demo`)
#   make test   builds and runs every test: cargo tests, loom models, pytest
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
LOOM_MAX_PREEMPTIONS ?= 2

.PHONY: all test test-rust test-loom test-python lint soak demo demo-rust venv bench bench-rust bench-python bench-http bench-channels clean

all: test

test: test-rust test-loom test-python

test-rust:
	$(CARGO) test --workspace
	$(CARGO) test -p vedart --features hyper --test hyper --test service
	$(CARGO) test -p vedart --features tracing --test tracing

# Users' command, at the workspace root: the loom models explore every
# interleaving up to the preemption bound, and every other test builds under the
# feature (tests needing real threads compiled out, doc examples not run).
# Release, or the models take minutes; its own target dir, as loom swaps the
# crates' sync types and would rebuild test-rust's.
test-loom:
	LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS) \
	  $(CARGO) test --features loom --release --target-dir target/loom

# A virtual environment with the package installed (the Rust extension built by maturin).
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml python-bindings/Cargo.toml $(shell find python-bindings/src runtime/src executors/src reactor/src macros/src -name '*.rs' 2>/dev/null)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	@echo "==> Building the Rust extension with maturin: 1-3 minutes on 2 cores the first time; cargo's progress follows."
	@set -o pipefail; $(VPY) -m pip install -v -e '.[test,tqdm,numpy,bench,dask]' 2>&1 \
	  | tee $(VENV)/build.log | { grep --line-buffered -E '^ *(Compiling|Finished|Successfully installed)' || true; } \
	  || { tail -n 80 $(VENV)/build.log; echo "==> build failed; the whole log is $(VENV)/build.log"; exit 1; }
	touch $@

test-python: venv
	$(VPY) -m pytest -q python-bindings/tests

# Eight minutes of every executor under faults (worker kills, cancellations,
# deadlines, init/shutdown cycles); fails on growth or a leftover process.
# `make test` runs a 45-second form (python-bindings/tests/test_soak.py).
soak: venv
	$(VPY) scripts/soak.py --seconds 480

# Python: ruff and mypy as configured in pyproject.toml, then mypy --strict over
# a sample of users' sync and async code (the types users see are true).
lint: venv
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(VPY) -m ruff check python-bindings benches scripts
	$(VPY) -m mypy
	$(VPY) -m mypy --strict python-bindings/tests/typing/sample.py
	$(CARGO) clippy -p vedart -p vedart-benches --features vedart/hyper,vedart-benches/http --all-targets -- -D warnings
	$(CARGO) clippy -p vedart --features tracing --all-targets -- -D warnings

demo: venv
	$(VPY) -m vedart demo

demo-rust:
	$(CARGO) run --release -p vedart --example demo

bench: bench-rust bench-python

bench-rust:
	$(CARGO) run --release -p vedart-benches --bin compare

# vedart::sync::mpsc vs tokio::sync::mpsc: 1,000,000 messages, 1 and 8 producers.
bench-channels:
	$(CARGO) run --release -p vedart-benches --bin compare_channels

# The hello-world hyper server on vedart vs on tokio under wrk (installed with
# apt-get when missing): requests/s and p99 ratios, 5 alternating rounds.
bench-http:
	$(CARGO) build --release -p vedart-benches --features http --bin http_hello
	$(PYTHON) benches/http/bench_http.py --server target/release/http_hello

bench-python: venv
	for script in benches/python/bench_*.py; do echo "== $$script"; $(VPY) $$script || exit 1; done

clean:
	$(CARGO) clean
	rm -rf $(VENV)
