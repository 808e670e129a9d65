//! `GpuStream` and `gpu_available`: the Rust half of the GPU executor.
//!
//! # Implementation
//!
//! `vedart._gpu` runs `@veda.gpu` functions with CuPy on a CUDA stream lent by
//! the device's stream pool in `vedart::gpu`:
//!
//! 1. `GpuStream(device)` opens the device (its primary context, the one CuPy
//!    uses too) and takes a stream from its pool; `handle` is the raw
//!    `CUstream` for `cupy.cuda.ExternalStream`.
//! 2. CuPy queues the copies and kernels on that stream.
//! 3. `synchronize` waits until the stream has run everything queued so far,
//!    without a thread spinning in the driver: a host callback queued behind
//!    the work completes a future (see `executors/src/gpu/README.md`), which
//!    this thread awaits with the interpreter released, checking for Ctrl+C
//!    every 50 ms.
//! 4. `release` (or dropping the object) returns the stream to the pool.
//!
//! Without a driver or a device, `gpu_available()` is false and `GpuStream`
//! raises `vedart.ExecutorError`; nothing here panics.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use pyo3::prelude::*;
use vedart::gpu::{self, Device, GpuError, Stream};

use crate::detach::{deadline_from_timeout, wait_detached};
use crate::process::executor_error;
use crate::sync::{Arc, Condvar, Mutex, lock};

/// Whether a CUDA driver loads and reports at least one device (probed once
/// per process; never raises).
#[pyfunction]
pub(crate) fn gpu_available() -> bool {
    gpu::is_available()
}

/// The number of CUDA devices (0 without a driver or device).
#[pyfunction]
pub(crate) fn gpu_device_count() -> usize {
    gpu::device_count()
}

/// Wakes the thread that waits in [`PyGpuStream::synchronize`].
#[derive(Default)]
struct Notify {
    woken: Mutex<bool>,
    cond: Condvar,
}

impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        *lock(&self.woken) = true;
        self.cond.notify_all();
    }
}

impl Notify {
    /// Blocks until woken or `limit` passes; consumes the wake-up.
    fn wait(&self, limit: Duration) {
        let mut woken = lock(&self.woken);
        if !*woken {
            woken = self
                .cond
                .wait_timeout(woken, limit)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        *woken = false;
    }
}

fn gpu_error(py: Python<'_>, error: &GpuError) -> PyErr {
    executor_error(py, format!("GPU: {error}"))
}

/// A CUDA stream lent by a device's stream pool; see the module documentation.
#[pyclass(frozen, module = "vedart._vedart", name = "GpuStream")]
pub struct PyGpuStream {
    /// `None` once released.
    stream: Mutex<Option<Stream>>,
    handle: usize,
    device: usize,
}

impl std::fmt::Debug for PyGpuStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuStream")
            .field("handle", &self.handle)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

#[pymethods]
impl PyGpuStream {
    /// Takes a stream from the pool of device `device` (opening the device on
    /// first use, with the interpreter released).
    ///
    /// Raises `vedart.ExecutorError` without a driver or device, or when the
    /// driver fails.
    #[new]
    #[pyo3(signature = (device=0))]
    fn new(py: Python<'_>, device: usize) -> PyResult<Self> {
        let opened = py.detach(move || Device::open(device).and_then(|device| device.stream()));
        let stream = opened.map_err(|error| gpu_error(py, &error))?;
        Ok(PyGpuStream {
            handle: stream.raw_handle(),
            device,
            stream: Mutex::new(Some(stream)),
        })
    }

    /// The raw `CUstream` handle, for `cupy.cuda.ExternalStream(handle)`.
    #[getter]
    fn handle(&self) -> usize {
        self.handle
    }

    /// The device ordinal.
    #[getter]
    fn device(&self) -> usize {
        self.device
    }

    /// Waits until the stream has run everything queued on it so far, at most
    /// `timeout` seconds, with the interpreter released; returns whether it
    /// has. Ctrl+C raises `KeyboardInterrupt`.
    ///
    /// Raises `vedart.ExecutorError` if the stream was released or the queued
    /// work failed.
    #[pyo3(signature = (timeout=None))]
    fn synchronize(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline_from_timeout(timeout)?;
        let future = {
            let guard = lock(&self.stream);
            let Some(stream) = guard.as_ref() else {
                return Err(executor_error(py, "the GPU stream was released"));
            };
            stream
                .synchronize_async()
                .map_err(|error| gpu_error(py, &error))?
        };
        let mut future = Box::pin(future);
        let notify = Arc::new(Notify::default());
        let waker = Waker::from(Arc::clone(&notify));
        let outcome = wait_detached(py, deadline, move |limit| {
            let mut cx = Context::from_waker(&waker);
            match Pin::new(&mut future).poll(&mut cx) {
                Poll::Ready(result) => Some(result),
                Poll::Pending => {
                    notify.wait(limit);
                    None
                }
            }
        })?;
        match outcome {
            None => Ok(false),
            Some(Ok(())) => Ok(true),
            Some(Err(error)) => Err(gpu_error(py, &error)),
        }
    }

    /// Returns the stream to the device's pool (work still queued runs on).
    /// Idempotent.
    fn release(&self) {
        drop(lock(&self.stream).take());
    }

    /// Whether `release` was called.
    #[getter]
    fn released(&self) -> bool {
        lock(&self.stream).is_none()
    }

    fn __repr__(&self) -> String {
        format!(
            "GpuStream(device={}, handle={:#x}, released={})",
            self.device,
            self.handle,
            self.released()
        )
    }
}
