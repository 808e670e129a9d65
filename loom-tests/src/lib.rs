//! loom models of VedaRT's lock-free protocols live in `tests/`.
