//! VedaRT: an async-first parallel runtime.
#![deny(unsafe_op_in_unsafe_fn)]
