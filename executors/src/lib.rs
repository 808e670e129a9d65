//! VedaRT's offload executors.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod blocking;
pub mod gpu;
pub mod process;
mod sync;
pub mod telemetry;
