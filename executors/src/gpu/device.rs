//! Probing for CUDA, opening devices, and what a device owns: its context, its
//! stream pool, and the resources of dropped futures still in use by the GPU.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use cudarc::driver::{CudaContext, CudaStream, DriverError, sys};

use super::completion::Completion;
use super::error::{GpuError, GpuErrorKind};
use super::ffi;
use super::kernel::{Module, Ptx, compile};
use super::stream::Stream;
use crate::sync::unmodelled::atomic::{AtomicUsize, Ordering};
use crate::sync::unmodelled::{Arc, Mutex, OnceLock, Weak, lock};

/// Idle streams a device keeps for reuse; streams returned beyond this are destroyed.
pub const MAX_IDLE_STREAMS: usize = 32;

/// Whether a CUDA device can be used: the driver loads and reports at least one
/// device. Never panics; the answer is probed once per process.
///
/// # Examples
///
/// ```
/// use vedart_executors::gpu;
///
/// if gpu::is_available() {
///     assert!(gpu::device_count() > 0);
/// } else {
///     assert_eq!(gpu::device_count(), 0);
/// }
/// ```
pub fn is_available() -> bool {
    probe().is_ok()
}

/// The number of CUDA devices: 0 without a driver or device. Never panics.
pub fn device_count() -> usize {
    probe().unwrap_or(0)
}

/// Loads the driver, initialises it, and counts devices, once per process.
fn probe() -> Result<usize, GpuError> {
    static PROBE: OnceLock<Result<usize, GpuError>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            if !ffi::driver_library_present() {
                return Err(GpuError::no_driver());
            }
            match catch_driver(CudaContext::device_count)? {
                Ok(count) if count > 0 => Ok(count as usize),
                Ok(_) => Err(GpuError::no_device()),
                Err(DriverError(sys::CUresult::CUDA_ERROR_NO_DEVICE)) => Err(GpuError::no_device()),
                Err(error) => Err(GpuError::driver(error)),
            }
        })
        .clone()
}

/// Runs a driver call, turning a panic of the loader (a driver library that lacks
/// an entry point cudarc expects) into an error instead of unwinding.
fn catch_driver<R>(f: impl FnOnce() -> R) -> Result<R, GpuError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        GpuError::new(
            GpuErrorKind::NoDriver,
            "the CUDA driver library lacks an entry point this build needs",
        )
    })
}

/// Open devices by ordinal, so that every `Device::open(n)` shares one stream
/// pool while any handle to device `n` lives.
fn registry() -> &'static Mutex<Vec<Weak<DeviceInner>>> {
    static DEVICES: OnceLock<Mutex<Vec<Weak<DeviceInner>>>> = OnceLock::new();
    DEVICES.get_or_init(|| Mutex::new(Vec::new()))
}

/// A CUDA device, opened through its primary context (the one the CUDA runtime
/// and libraries such as CuPy use too, so streams and memory are shared).
///
/// Cheap to clone; all clones, and all handles from `open` of the same ordinal
/// while one is alive, share one stream pool.
///
/// # Examples
///
/// ```
/// use vedart_executors::gpu::Device;
///
/// match Device::open(0) {
///     Ok(device) => {
///         let stream = device.stream()?;
///         println!("stream handle {:#x} on {}", stream.raw_handle(), device.name()?);
///     }
///     Err(e) => assert!(e.is_no_driver() || e.is_no_device()),
/// }
/// # Ok::<(), vedart_executors::gpu::GpuError>(())
/// ```
#[derive(Clone)]
pub struct Device {
    inner: Arc<DeviceInner>,
}

struct DeviceInner {
    /// The retained primary context; released when the last handle goes.
    ctx: Arc<CudaContext>,
    ordinal: usize,
    /// Idle pooled streams, most recently returned last.
    idle_streams: Mutex<Vec<Arc<CudaStream>>>,
    /// Streams this device has created (pooled or handed out or destroyed).
    streams_created: AtomicUsize,
    /// What futures dropped before completion still lend to the GPU (pinned
    /// buffers), with the completion that says when the GPU is done with it.
    lent: Mutex<Vec<Lent>>,
}

/// Resources of a dropped future, held until its completion fires.
struct Lent {
    completion: Arc<Completion>,
    _resources: Box<dyn Send>,
}

impl Drop for DeviceInner {
    fn drop(&mut self) {
        // Lent resources may still be in use by queued work: wait for all of
        // it before releasing them (once, at teardown).
        let lent = self
            .lent
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !lent.is_empty() {
            let _ = self.ctx.synchronize();
            lent.clear();
        }
    }
}

impl Device {
    /// Opens device `ordinal` (0-based), or returns the already open one.
    ///
    /// # Errors
    ///
    /// - [`GpuErrorKind::NoDriver`] when the CUDA driver library cannot be loaded;
    /// - [`GpuErrorKind::NoDevice`] when it loads but reports no device;
    /// - [`GpuErrorKind::InvalidOrdinal`] when `ordinal >= device_count()`;
    /// - [`GpuErrorKind::Driver`] when initialising the driver or context fails.
    ///
    /// Never panics.
    pub fn open(ordinal: usize) -> Result<Device, GpuError> {
        let count = probe()?;
        if ordinal >= count {
            return Err(GpuError::invalid_ordinal(ordinal, count));
        }
        let mut devices = lock(registry());
        if let Some(inner) = devices.get(ordinal).and_then(Weak::upgrade) {
            return Ok(Device { inner });
        }
        let ctx = catch_driver(|| CudaContext::new(ordinal))??;
        let inner = Arc::new(DeviceInner {
            ctx,
            ordinal,
            idle_streams: Mutex::new(Vec::new()),
            streams_created: AtomicUsize::new(0),
            lent: Mutex::new(Vec::new()),
        });
        if devices.len() <= ordinal {
            devices.resize_with(ordinal + 1, Weak::new);
        }
        devices[ordinal] = Arc::downgrade(&inner);
        Ok(Device { inner })
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.inner.ordinal
    }

    /// The device's name, such as `"NVIDIA H100 80GB HBM3"`.
    ///
    /// # Errors
    ///
    /// A [`GpuError`] if the driver call fails.
    pub fn name(&self) -> Result<String, GpuError> {
        Ok(self.inner.ctx.name()?)
    }

    /// Total device memory in bytes.
    ///
    /// # Errors
    ///
    /// A [`GpuError`] if the driver call fails.
    pub fn total_memory(&self) -> Result<usize, GpuError> {
        Ok(self.inner.ctx.total_mem()?)
    }

    /// The compute capability as `(major, minor)`.
    ///
    /// # Errors
    ///
    /// A [`GpuError`] if the driver call fails.
    pub fn compute_capability(&self) -> Result<(i32, i32), GpuError> {
        Ok(self.inner.ctx.compute_capability()?)
    }

    /// A stream from the device's pool (a new one if none is idle). It returns
    /// to the pool when dropped, with any work still queued on it running on.
    ///
    /// # Errors
    ///
    /// A [`GpuError`] if a new stream cannot be created.
    pub fn stream(&self) -> Result<Stream, GpuError> {
        let pooled = lock(&self.inner.idle_streams).pop();
        let cuda = match pooled {
            Some(cuda) => cuda,
            None => {
                let cuda = self.inner.ctx.new_stream()?;
                self.inner.streams_created.fetch_add(1, Ordering::Relaxed);
                cuda
            }
        };
        Ok(Stream::new(cuda, self.clone()))
    }

    /// Streams created so far, and how many of them are idle in the pool.
    pub fn stream_pool_stats(&self) -> StreamPoolStats {
        StreamPoolStats {
            created: self.inner.streams_created.load(Ordering::Relaxed),
            idle: lock(&self.inner.idle_streams).len(),
        }
    }

    /// Loads a PTX module onto the device.
    ///
    /// # Errors
    ///
    /// A [`GpuErrorKind::Driver`] error if the driver rejects the PTX (for
    /// example `CUDA_ERROR_UNSUPPORTED_PTX_VERSION` when the PTX is newer than
    /// the driver).
    pub fn load_ptx(&self, ptx: &Ptx) -> Result<Module, GpuError> {
        let module = self
            .inner
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx.as_str()))?;
        Ok(Module::new(module, self.clone()))
    }

    /// Compiles CUDA C++ with NVRTC and loads the result: [`compile`] then
    /// [`load_ptx`](Self::load_ptx).
    ///
    /// # Errors
    ///
    /// As [`compile`] and [`load_ptx`](Self::load_ptx).
    pub fn compile(&self, source: &str) -> Result<Module, GpuError> {
        self.load_ptx(&compile(source)?)
    }

    pub(super) fn context(&self) -> &Arc<CudaContext> {
        &self.inner.ctx
    }

    pub(super) fn same_device(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Takes back a stream handed out by [`stream`](Self::stream).
    pub(super) fn return_stream(&self, cuda: Arc<CudaStream>) {
        let mut idle = lock(&self.inner.idle_streams);
        if idle.len() < MAX_IDLE_STREAMS {
            idle.push(cuda);
        }
        // Otherwise the stream is destroyed once `cuda` drops (after the lock);
        // the driver finishes its queued work first.
    }

    /// Holds `resources` until `completion` fires; for a future dropped early.
    pub(super) fn keep_until_done(&self, completion: Arc<Completion>, resources: Box<dyn Send>) {
        let finished = {
            let mut lent = lock(&self.inner.lent);
            let finished = take_finished(&mut lent);
            lent.push(Lent {
                completion,
                _resources: resources,
            });
            finished
        };
        drop(finished);
    }

    /// Releases lent resources whose work is done; called as new work is queued.
    pub(super) fn release_finished(&self) {
        let finished = {
            let mut lent = lock(&self.inner.lent);
            if lent.is_empty() {
                return;
            }
            take_finished(&mut lent)
        };
        // Dropped outside the lock: freeing pinned memory calls the driver.
        drop(finished);
    }

    /// Resources of dropped futures that the GPU has not finished with yet.
    pub fn pending_releases(&self) -> usize {
        lock(&self.inner.lent).len()
    }
}

/// Moves the entries whose completion fired out of `lent`.
fn take_finished(lent: &mut Vec<Lent>) -> Vec<Lent> {
    let (finished, pending) = std::mem::take(lent)
        .into_iter()
        .partition(|entry| entry.completion.is_done());
    *lent = pending;
    finished
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("ordinal", &self.inner.ordinal)
            .field("streams", &self.stream_pool_stats())
            .finish()
    }
}

/// A device's stream pool, from [`Device::stream_pool_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamPoolStats {
    /// Streams the device has created.
    pub created: usize,
    /// Streams idle in the pool, ready to be handed out.
    pub idle: usize,
}
