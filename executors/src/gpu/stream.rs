//! Pooled streams and the operations that queue work on them, each returning a
//! [`GpuFuture`] that resolves when the stream reaches that point.

use std::fmt;

use cudarc::driver::{CudaStream, LaunchArgs, PushKernelArg};

use super::completion::{Completion, GpuFuture};
use super::device::Device;
use super::error::GpuError;
use super::ffi;
use super::kernel::{Kernel, LaunchConfig};
use super::memory::{DeviceBuffer, Element, HostBuffer};
use crate::sync::unmodelled::Arc;

/// What an empty buffer is passed to a kernel as: a null device pointer.
static NULL_DEVICE_POINTER: u64 = 0;

/// A CUDA stream lent by a [`Device`]'s pool; it goes back to the pool on drop.
///
/// Work queued on one stream runs in order; work on different streams may
/// overlap. Every operation returns a [`GpuFuture`] that resolves when the
/// stream has executed everything queued up to and including it, without
/// blocking a thread meanwhile.
///
/// # Examples
///
/// ```
/// use vedart_executors::gpu::Device;
///
/// let Ok(device) = Device::open(0) else { return Ok(()) }; // no GPU here
/// let stream = device.stream()?;
/// futures::executor::block_on(async {
///     let on_device = stream.copy_to_device(&[1.0f32, 2.0, 3.0])?.await?;
///     let back = stream.copy_to_host(&on_device)?.await?;
///     assert_eq!(back, [1.0, 2.0, 3.0]);
///     stream.synchronize_async()?.await
/// })?;
/// # Ok::<(), vedart_executors::gpu::GpuError>(())
/// ```
pub struct Stream {
    cuda: Arc<CudaStream>,
    device: Device,
}

impl Stream {
    pub(super) fn new(cuda: Arc<CudaStream>, device: Device) -> Self {
        Self { cuda, device }
    }

    /// The raw `CUstream` handle as an integer, for other CUDA libraries, for
    /// example `cupy.cuda.ExternalStream(handle)`. The handle stays valid while
    /// this `Stream` lives; work queued through it is ordered with the
    /// operations of this `Stream`.
    pub fn raw_handle(&self) -> usize {
        self.cuda.cu_stream() as usize
    }

    /// The device the stream belongs to.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Allocates `len` zeroed elements on the device, ordered on this stream.
    ///
    /// # Errors
    ///
    /// A [`GpuError`] if the allocation fails (for example out of memory), or
    /// [`GpuErrorKind::InvalidArgument`](super::GpuErrorKind::InvalidArgument)
    /// if its size in bytes overflows.
    pub fn alloc_zeros<T: Element>(&self, len: usize) -> Result<DeviceBuffer<T>, GpuError> {
        let fits = len
            .checked_mul(std::mem::size_of::<T>())
            .is_some_and(|bytes| bytes < isize::MAX as usize);
        if !fits {
            return Err(GpuError::invalid_argument(format!(
                "a device buffer of {len} elements does not fit in memory"
            )));
        }
        let slice = if len == 0 {
            None
        } else {
            Some(self.cuda.alloc_zeros::<T>(len)?)
        };
        Ok(DeviceBuffer::new(slice, len, self.device.clone()))
    }

    /// Copies `src` to new device memory. `src` is copied into page-locked
    /// staging memory at once (so it may be reused as soon as this returns), and
    /// the future resolves to the device buffer once the transfer is done.
    ///
    /// # Errors
    ///
    /// A [`GpuError`] if allocating or queuing fails.
    pub fn copy_to_device<T: Element>(
        &self,
        src: &[T],
    ) -> Result<GpuFuture<DeviceBuffer<T>>, GpuError> {
        let staging = HostBuffer::from_slice(&self.device, src)?;
        let mut dst = self.alloc_zeros::<T>(src.len())?;
        let transfer = self.copy_host_to_device(staging, &mut dst)?;
        Ok(transfer.map(move |_staging| dst))
    }

    /// Copies page-locked `src` into `dst` (of the same length). The future hands
    /// `src` back once the transfer is done; `dst` may be used by later work on
    /// any stream right away (it waits for this copy).
    ///
    /// # Errors
    ///
    /// [`GpuErrorKind::InvalidArgument`](super::GpuErrorKind::InvalidArgument)
    /// if the lengths differ or the buffers belong to another device; a driver
    /// error if queuing fails.
    pub fn copy_host_to_device<T: Element>(
        &self,
        src: HostBuffer<T>,
        dst: &mut DeviceBuffer<T>,
    ) -> Result<GpuFuture<HostBuffer<T>>, GpuError> {
        self.check_copy(src.len(), dst.len(), src.device(), dst.device())?;
        if let (Some(from), Some(to)) = (src.memory().cudarc(), dst.cudarc_mut()) {
            self.cuda.memcpy_htod(from, to)?;
        }
        self.completion_future(move || src)
    }

    /// Copies `src` to a new `Vec`, staging through page-locked memory. The
    /// future resolves once the transfer is done.
    ///
    /// # Errors
    ///
    /// A [`GpuError`] if allocating or queuing fails, or `src` belongs to
    /// another device.
    pub fn copy_to_host<T: Element>(
        &self,
        src: &DeviceBuffer<T>,
    ) -> Result<GpuFuture<Vec<T>>, GpuError> {
        let staging = HostBuffer::zeroed(&self.device, src.len())?;
        let transfer = self.copy_device_to_host(src, staging)?;
        Ok(transfer.map(|staging| staging.to_vec()))
    }

    /// Copies `src` into page-locked `dst` (of the same length). The future hands
    /// `dst` back, filled, once the transfer is done.
    ///
    /// # Errors
    ///
    /// As [`copy_host_to_device`](Self::copy_host_to_device).
    pub fn copy_device_to_host<T: Element>(
        &self,
        src: &DeviceBuffer<T>,
        mut dst: HostBuffer<T>,
    ) -> Result<GpuFuture<HostBuffer<T>>, GpuError> {
        self.check_copy(src.len(), dst.len(), src.device(), dst.device())?;
        if let (Some(from), Some(to)) = (src.cudarc(), dst.memory_mut().cudarc_mut()) {
            self.cuda.memcpy_dtoh(from, to)?;
        }
        self.completion_future(move || dst)
    }

    /// Starts a launch of `kernel` on this stream; add arguments, then
    /// [`launch`](Launch::launch).
    pub fn launch_builder<'a>(&'a self, kernel: &'a Kernel) -> Launch<'a> {
        let mismatch = (!kernel.device().same_device(&self.device)).then(|| {
            format!(
                "kernel `{}` is loaded on device {}, the stream belongs to device {}",
                kernel.name(),
                kernel.device().ordinal(),
                self.device.ordinal()
            )
        });
        Launch {
            stream: self,
            args: self.cuda.launch_builder(kernel.cudarc()),
            mismatch,
        }
    }

    /// A future that resolves when the stream has executed everything queued so
    /// far. Unlike a blocking synchronize, no thread waits.
    ///
    /// # Errors
    ///
    /// A [`GpuError`] if the callback cannot be queued.
    pub fn synchronize_async(&self) -> Result<GpuFuture<()>, GpuError> {
        self.completion_future(|| ())
    }

    fn check_copy(
        &self,
        src_len: usize,
        dst_len: usize,
        src_device: &Device,
        dst_device: &Device,
    ) -> Result<(), GpuError> {
        if src_len != dst_len {
            return Err(GpuError::invalid_argument(format!(
                "copy between buffers of different lengths ({src_len} and {dst_len} elements)"
            )));
        }
        if !src_device.same_device(&self.device) || !dst_device.same_device(&self.device) {
            return Err(GpuError::invalid_argument(format!(
                "copy between devices {} and {} queued on a stream of device {}",
                src_device.ordinal(),
                dst_device.ordinal(),
                self.device.ordinal()
            )));
        }
        Ok(())
    }

    /// Queues the completion callback; the future owns `finish` (and what it
    /// captured, which the queued work may use) until the stream passes.
    fn completion_future<T: 'static>(
        &self,
        finish: impl FnOnce() -> T + Send + 'static,
    ) -> Result<GpuFuture<T>, GpuError> {
        self.device.release_finished();
        let completion = Completion::new();
        if let Err(error) = ffi::add_callback(&self.cuda, &completion) {
            // Work queued just before may still use what `finish` owns: let the
            // stream drain before releasing it (a blocking wait, on this rare
            // error path only).
            let _ = self.cuda.synchronize();
            drop(finish);
            return Err(error.into());
        }
        Ok(GpuFuture::new(completion, finish, self.device.clone()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.device.return_stream(Arc::clone(&self.cuda));
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("device", &self.device.ordinal())
            .field("handle", &format_args!("{:#x}", self.raw_handle()))
            .finish()
    }
}

/// A kernel launch being set up, from [`Stream::launch_builder`].
///
/// Arguments are pushed in the order of the kernel's parameters: device
/// buffers as pointers ([`buffer`](Self::buffer), [`buffer_mut`](Self::buffer_mut))
/// and scalars by value ([`arg`](Self::arg)).
pub struct Launch<'a> {
    stream: &'a Stream,
    args: LaunchArgs<'a>,
    /// Why the launch cannot go ahead (an object of another device), if so.
    mismatch: Option<String>,
}

impl<'a> Launch<'a> {
    /// Pushes a scalar argument (copied when the kernel is launched).
    pub fn arg<T: Element>(&mut self, value: &'a T) -> &mut Self {
        self.args.arg(value);
        self
    }

    /// Pushes a buffer the kernel reads, as a device pointer (null if empty).
    pub fn buffer<T: Element>(&mut self, buffer: &'a DeviceBuffer<T>) -> &mut Self {
        self.check_device(buffer.device());
        match buffer.cudarc() {
            Some(slice) => self.args.arg(slice),
            None => self.args.arg(&NULL_DEVICE_POINTER),
        };
        self
    }

    /// Pushes a buffer the kernel writes, as a device pointer (null if empty).
    /// Later reads of it, on any stream, wait for the kernel.
    pub fn buffer_mut<T: Element>(&mut self, buffer: &'a mut DeviceBuffer<T>) -> &mut Self {
        self.check_device(buffer.device());
        match buffer.cudarc_mut() {
            Some(slice) => self.args.arg(slice),
            None => self.args.arg(&NULL_DEVICE_POINTER),
        };
        self
    }

    fn check_device(&mut self, device: &Device) {
        if self.mismatch.is_none() && !device.same_device(&self.stream.device) {
            self.mismatch = Some(format!(
                "a buffer of device {} was passed to a kernel launched on device {}",
                device.ordinal(),
                self.stream.device.ordinal()
            ));
        }
    }

    /// Queues the kernel; the future resolves when it has run.
    ///
    /// # Safety
    ///
    /// The pushed arguments must match the kernel's parameters in number, order
    /// and type, and the kernel must stay within the buffers it is given and
    /// write only those pushed with [`buffer_mut`](Self::buffer_mut). The GPU
    /// cannot check any of this.
    ///
    /// # Errors
    ///
    /// [`GpuErrorKind::InvalidArgument`](super::GpuErrorKind::InvalidArgument)
    /// if the kernel or a buffer belongs to another device; a driver error if
    /// the launch is rejected (for example an invalid configuration). Faults
    /// while the kernel runs surface from the future.
    #[allow(unsafe_code)] // The contract is the caller's; the one unsafe call is `ffi::launch`.
    pub unsafe fn launch(&mut self, config: LaunchConfig) -> Result<GpuFuture<()>, GpuError> {
        if let Some(reason) = self.mismatch.clone() {
            return Err(GpuError::invalid_argument(reason));
        }
        // SAFETY: the caller upholds this function's contract, which is
        // `ffi::launch`'s.
        unsafe { ffi::launch(&mut self.args, config.to_cudarc()) }?;
        self.stream.completion_future(|| ())
    }
}

impl fmt::Debug for Launch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Launch")
            .field("stream", &self.stream)
            .field("mismatch", &self.mismatch)
            .finish_non_exhaustive()
    }
}
