//! CUDA devices, pooled streams, and GPU work as futures.
//!
//! Built on cudarc with dynamic loading: the crate builds, links and runs
//! where no CUDA is installed. [`is_available`] never panics, and
//! [`Device::open`] returns [`GpuErrorKind::NoDriver`] or
//! [`GpuErrorKind::NoDevice`] instead of panicking.
//!
//! # Implementation
//!
//! - Probing: the driver library is looked for once per process
//!   (`is_culib_present`), then `cuInit` and the device count are read once.
//!   Only then does anything call into libcuda, whose absence would otherwise
//!   make cudarc panic.
//! - [`Device`] retains the device's primary context (shared with the CUDA
//!   runtime, so with CuPy) and owns a pool of non-blocking streams
//!   ([`Device::stream`]; at most [`MAX_IDLE_STREAMS`] idle ones are kept).
//!   [`Stream::raw_handle`] exposes the `CUstream` as an integer for
//!   `cupy.cuda.ExternalStream`.
//! - Host-to-device and device-to-host copies, kernel launches and
//!   [`Stream::synchronize_async`] return a [`GpuFuture`] that resolves when
//!   the stream reaches that point. No thread waits: a host callback queued
//!   behind the work (`cuStreamAddCallback`) stores the stream's status and
//!   wakes the task from the CUDA driver's thread. The protocol, and why
//!   copies stage through page-locked memory, are in
//!   [`README.md`](https://github.com/vedart/vedart/blob/main/executors/src/gpu/README.md)
//!   beside this file.
//! - Kernels come as PTX ([`Ptx`], [`Device::load_ptx`]) or are compiled from
//!   CUDA C++ at run time with NVRTC ([`compile`], [`Device::compile`]) where
//!   `libnvrtc` is present.
//! - All `unsafe` of this module, and every raw CUDA call, is in one file,
//!   `ffi.rs`; the rest denies `unsafe_code` except the declaration of
//!   [`Launch::launch`], whose contract (kernel arguments) only the caller can
//!   keep.
//!
//! # Examples
//!
//! ```
//! use vedart_executors::gpu::{self, Device};
//!
//! if !gpu::is_available() {
//!     let error = Device::open(0).unwrap_err();
//!     assert!(error.is_no_driver() || error.is_no_device());
//! }
//! ```
#![deny(unsafe_code)]

mod completion;
mod device;
mod error;
mod ffi;
mod kernel;
mod memory;
mod stream;

pub use completion::GpuFuture;
pub use device::{Device, MAX_IDLE_STREAMS, StreamPoolStats, device_count, is_available};
pub use error::{GpuError, GpuErrorKind};
pub use kernel::{Kernel, LaunchConfig, Module, Ptx, compile, compiler_available};
pub use memory::{DeviceBuffer, Element, HostBuffer};
pub use stream::{Launch, Stream};
