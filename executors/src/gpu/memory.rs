//! Memory: element types, device buffers and page-locked host buffers.

use std::fmt;
use std::ops::{Deref, DerefMut};

use cudarc::driver::CudaSlice;

use super::device::Device;
use super::error::GpuError;
use super::ffi::PinnedMemory;

mod sealed {
    /// cudarc's requirements, kept out of the public API.
    pub trait Sealed: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits {}
}

/// A plain numeric type that can live in device memory: every bit pattern is a
/// valid value and zero bytes are zero. Implemented for the fixed-size integers
/// and floats; sealed.
pub trait Element: sealed::Sealed + Copy + Default + Send + Sync + fmt::Debug + 'static {}

macro_rules! elements {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {}
    )*};
}

elements!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

/// Memory on a device holding `len` elements of `T`.
///
/// Created by [`Stream::alloc_zeros`](super::Stream::alloc_zeros) and
/// [`Stream::copy_to_device`](super::Stream::copy_to_device). Reads and writes
/// are ordered across streams (each buffer carries CUDA events that later users
/// wait on), and dropping it frees the memory in stream order, after the work
/// already queued on it.
pub struct DeviceBuffer<T: Element> {
    /// cudarc's allocation; `None` exactly when `len == 0` (CUDA cannot
    /// allocate zero bytes; an empty buffer is passed to kernels as null).
    slice: Option<CudaSlice<T>>,
    len: usize,
    device: Device,
}

impl<T: Element> DeviceBuffer<T> {
    pub(super) fn new(slice: Option<CudaSlice<T>>, len: usize, device: Device) -> Self {
        Self { slice, len, device }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device that holds the memory.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub(super) fn cudarc(&self) -> Option<&CudaSlice<T>> {
        self.slice.as_ref()
    }

    pub(super) fn cudarc_mut(&mut self) -> Option<&mut CudaSlice<T>> {
        self.slice.as_mut()
    }
}

impl<T: Element> fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("device", &self.device.ordinal())
            .field("len", &self.len)
            .field("element", &std::any::type_name::<T>())
            .finish()
    }
}

/// Page-locked ("pinned") host memory holding `len` elements of `T`.
///
/// Copies between pinned memory and a device run as true DMA, asynchronously
/// and at full bus speed, which is why the stream copies stage through it. Use
/// these buffers directly with
/// [`Stream::copy_host_to_device`](super::Stream::copy_host_to_device) and
/// [`Stream::copy_device_to_host`](super::Stream::copy_device_to_host) to
/// reuse them across transfers. Those take the buffer by value and hand it back
/// from their future, so the host can never touch it while a copy is in flight.
///
/// Dereferences to `[T]`.
pub struct HostBuffer<T: Element> {
    memory: PinnedMemory<T>,
    device: Device,
}

impl<T: Element> HostBuffer<T> {
    /// Allocates `len` zeroed elements, page-locked for `device`.
    ///
    /// # Errors
    ///
    /// A [`GpuError`] if the driver cannot pin that much memory, or the size
    /// overflows.
    pub fn zeroed(device: &Device, len: usize) -> Result<Self, GpuError> {
        Ok(Self {
            memory: PinnedMemory::zeroed(device.context(), len)?,
            device: device.clone(),
        })
    }

    /// Allocates page-locked memory for `device` holding a copy of `src`.
    ///
    /// # Errors
    ///
    /// As [`zeroed`](Self::zeroed).
    pub fn from_slice(device: &Device, src: &[T]) -> Result<Self, GpuError> {
        Ok(Self {
            memory: PinnedMemory::copy_of(device.context(), src)?,
            device: device.clone(),
        })
    }

    /// The device the memory is pinned for.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub(super) fn memory(&self) -> &PinnedMemory<T> {
        &self.memory
    }

    pub(super) fn memory_mut(&mut self) -> &mut PinnedMemory<T> {
        &mut self.memory
    }
}

impl<T: Element> Deref for HostBuffer<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.memory.as_slice()
    }
}

impl<T: Element> DerefMut for HostBuffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.memory.as_mut_slice()
    }
}

impl<T: Element> fmt::Debug for HostBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBuffer")
            .field("device", &self.device.ordinal())
            .field("len", &self.memory.len())
            .field("element", &std::any::type_name::<T>())
            .finish()
    }
}
