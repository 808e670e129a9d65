//! The GPU module's unsafe boundary: every `unsafe` operation of `gpu` is here.
//!
//! The rest of the module uses cudarc's safe API plus the safe functions of this
//! file, and is compiled with `#![deny(unsafe_code)]`. What is here:
//!
//! - probing for the driver and NVRTC libraries (dynamic loading);
//! - registering a stream callback ([`add_callback`]) and the callback itself
//!   ([`stream_reached`]), the heart of the completion protocol (see
//!   `README.md` next to this file);
//! - page-locked host memory ([`PinnedMemory`]) and its slices;
//! - the raw kernel launch ([`launch`]), whose contract is the caller's;
//! - naming a raw `CUresult` code ([`error_name`]).
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{self, NonNull};

use cudarc::driver::{CudaContext, CudaStream, DriverError, LaunchArgs, PinnedHostSlice, sys};

use super::completion::Completion;
use super::error::GpuError;
use super::memory::Element;
use crate::sync::unmodelled::{Arc, OnceLock};

/// Whether the CUDA driver library can be loaded. Probed once per process.
pub(super) fn driver_library_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| {
        // SAFETY: this only tries `dlopen` on the usual names of libcuda and
        // closes what it opened. Loading libcuda runs its initialisers, which
        // every CUDA program does; nothing else is called.
        unsafe { sys::is_culib_present() }
    })
}

/// Whether the NVRTC library can be loaded. Probed once per process.
pub(super) fn nvrtc_library_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| {
        // SAFETY: as for `driver_library_present`, for libnvrtc.
        unsafe { cudarc::nvrtc::sys::is_culib_present() }
    })
}

/// The stream callback as we declare it: the status as a plain `u32`, so that a
/// code unknown to cudarc's `CUresult` enum (a newer driver) is not an invalid
/// enum value.
type RawStreamCallback = unsafe extern "C" fn(sys::CUstream, u32, *mut c_void);

/// The stream callback as cudarc declares it.
type CudarcStreamCallback = unsafe extern "C" fn(sys::CUstream, sys::CUresult, *mut c_void);

/// Runs on a CUDA driver thread once the stream has executed everything queued
/// before it (or has failed): completes the operation and wakes its task.
///
/// # Safety
///
/// `user_data` must come from `Arc::into_raw` of an `Arc<Completion>` whose
/// strong reference is handed to this call; the driver calls this function
/// exactly once per successful registration.
unsafe extern "C" fn stream_reached(_stream: sys::CUstream, status: u32, user_data: *mut c_void) {
    // SAFETY: per the contract, this reclaims the one strong reference leaked
    // for this registration, exactly once.
    let completion = unsafe { Arc::from_raw(user_data.cast_const().cast::<Completion>()) };
    // No CUDA call happens here (the driver forbids it in callbacks): complete()
    // stores the status and wakes a waker. No panic may unwind into the driver.
    let _ = catch_unwind(AssertUnwindSafe(move || {
        completion.complete(status);
        drop(completion);
    }));
}

/// Queues a host callback on `stream` that completes `completion` when the
/// stream reaches this point, passing the stream's status.
///
/// `cuStreamAddCallback` is used rather than `cuLaunchHostFunc` because the
/// driver calls it even when the context has failed (with the error as status),
/// so a future can never hang on a failed stream.
pub(super) fn add_callback(
    stream: &CudaStream,
    completion: &Arc<Completion>,
) -> Result<(), DriverError> {
    stream.context().bind_to_thread()?;
    let user_data = Arc::into_raw(Arc::clone(completion))
        .cast_mut()
        .cast::<c_void>();
    // SAFETY: the two function pointer types differ only in the second
    // parameter, `CUresult` (a `#[repr(u32)]` enum) versus `u32`: identical ABI.
    let callback =
        unsafe { std::mem::transmute::<RawStreamCallback, CudarcStreamCallback>(stream_reached) };
    // SAFETY: `stream` is a live stream of the context bound above (the caller
    // holds its `Arc`, and the driver keeps a destroyed stream's resources until
    // its queued work is done). `stream_reached` makes no CUDA call and upholds
    // the callback contract with the strong reference leaked in `user_data`.
    // Flags must be 0.
    let status =
        unsafe { sys::cuStreamAddCallback(stream.cu_stream(), Some(callback), user_data, 0) };
    if let Err(error) = status.result() {
        // SAFETY: registration failed, so the driver never calls back: reclaim
        // the reference leaked above, once.
        drop(unsafe { Arc::from_raw(user_data.cast_const().cast::<Completion>()) });
        return Err(error);
    }
    Ok(())
}

/// Launches the kernel configured in `args`.
///
/// # Safety
///
/// The caller guarantees what [`Launch::launch`](super::Launch::launch)
/// documents: the arguments match the kernel's parameters in number, order and
/// type, and the kernel stays within the buffers it is given.
pub(super) unsafe fn launch(
    args: &mut LaunchArgs<'_>,
    config: cudarc::driver::LaunchConfig,
) -> Result<(), DriverError> {
    // SAFETY: forwarded to the caller, see above.
    unsafe { args.launch(config) }.map(drop)
}

/// Names a raw `CUresult` code through `cuGetErrorName`, if the driver knows it.
pub(super) fn error_name(code: u32) -> Option<String> {
    type GetErrorName = unsafe extern "C" fn(u32, *mut *const c_char) -> u32;
    if !driver_library_present() {
        return None;
    }
    // SAFETY: the library loads (checked above), so `culib` does not panic.
    let library = unsafe { sys::culib() };
    // SAFETY: `cuGetErrorName(CUresult, const char**) -> CUresult` has this C
    // signature; `CUresult` is a 32-bit unsigned enum.
    let get_error_name = unsafe { library.get::<GetErrorName>(b"cuGetErrorName\0") }.ok()?;
    let mut name: *const c_char = ptr::null();
    // SAFETY: `name` is a valid out-pointer; the driver accepts any code and
    // fails for an unknown one.
    let status = unsafe { (*get_error_name)(code, &mut name) };
    if status != 0 || name.is_null() {
        return None;
    }
    // SAFETY: on success the driver points `name` at a static NUL-terminated string.
    Some(
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Page-locked host memory holding `len` initialised elements of `T`.
///
/// # Invariant
///
/// Every element is initialised from construction on, and no device operation
/// that reads or writes this memory is in flight while a reference from
/// [`as_slice`](Self::as_slice) / [`as_mut_slice`](Self::as_mut_slice) exists.
/// The owner ([`HostBuffer`](super::HostBuffer)) upholds the second half: the
/// stream operations that enqueue a copy take the buffer by value and give it
/// back only from a future that completed after the stream passed the copy.
pub(super) struct PinnedMemory<T: Element> {
    /// The allocation (with cudarc's usage event); `None` when `len == 0`, as
    /// the driver cannot allocate zero bytes.
    slice: Option<PinnedHostSlice<T>>,
    /// Address of the first element (dangling and aligned when `len == 0`).
    addr: usize,
    len: usize,
}

impl<T: Element> PinnedMemory<T> {
    /// Allocates `len` elements, all zero.
    pub(super) fn zeroed(ctx: &Arc<CudaContext>, len: usize) -> Result<Self, GpuError> {
        let (slice, ptr) = alloc_pinned::<T>(ctx, len)?;
        // SAFETY: `ptr` points to `len` writable elements (or dangles for 0);
        // all-zero bytes are a valid `T` (`Element: ValidAsZeroBits`).
        unsafe { ptr::write_bytes(ptr, 0, len) };
        Ok(Self::from_parts(slice, ptr, len))
    }

    /// Allocates a copy of `src`.
    pub(super) fn copy_of(ctx: &Arc<CudaContext>, src: &[T]) -> Result<Self, GpuError> {
        let (slice, ptr) = alloc_pinned::<T>(ctx, src.len())?;
        // SAFETY: `ptr` points to `src.len()` writable elements that no one else
        // can see yet, so the regions do not overlap.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), ptr, src.len()) };
        Ok(Self::from_parts(slice, ptr, src.len()))
    }

    fn from_parts(slice: Option<PinnedHostSlice<T>>, ptr: *mut T, len: usize) -> Self {
        Self {
            slice,
            addr: ptr as usize,
            len,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn as_slice(&self) -> &[T] {
        // SAFETY: `addr` points to `len` initialised elements owned by `self`,
        // and by the invariant no device operation writes them now.
        unsafe { std::slice::from_raw_parts(self.addr as *const T, self.len) }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as `as_slice`, and `&mut self` makes the reference unique.
        unsafe { std::slice::from_raw_parts_mut(self.addr as *mut T, self.len) }
    }

    /// cudarc's view of the allocation, for enqueuing copies (`None` if empty).
    pub(super) fn cudarc(&self) -> Option<&PinnedHostSlice<T>> {
        self.slice.as_ref()
    }

    /// cudarc's view of the allocation, for enqueuing copies (`None` if empty).
    pub(super) fn cudarc_mut(&mut self) -> Option<&mut PinnedHostSlice<T>> {
        self.slice.as_mut()
    }
}

/// Allocates `len` uninitialised page-locked elements and returns them with a
/// pointer to the first (dangling for `len == 0`, when nothing is allocated).
fn alloc_pinned<T: Element>(
    ctx: &Arc<CudaContext>,
    len: usize,
) -> Result<(Option<PinnedHostSlice<T>>, *mut T), GpuError> {
    if len == 0 {
        return Ok((None, NonNull::<T>::dangling().as_ptr()));
    }
    let fits = len
        .checked_mul(std::mem::size_of::<T>())
        .is_some_and(|bytes| bytes < isize::MAX as usize);
    if !fits {
        return Err(GpuError::invalid_argument(format!(
            "a host buffer of {len} elements does not fit in memory"
        )));
    }
    // SAFETY: the memory is uninitialised; both callers initialise all `len`
    // elements through the returned pointer before any reference to it exists.
    // Flags 0: plain page-locked memory (readable by the CPU at full speed,
    // unlike write-combined memory).
    let mut slice = unsafe { ctx.alloc_pinned_with_flags::<T>(len, 0) }?;
    // Synchronises cudarc's fresh, never-recorded event: returns at once.
    let ptr = slice.as_mut_ptr()?;
    Ok((Some(slice), ptr))
}
