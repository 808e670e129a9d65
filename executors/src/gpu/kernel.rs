//! Kernels: PTX text, run-time compilation with NVRTC, loaded modules, and
//! launch configurations.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use cudarc::driver::{CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};

use super::device::Device;
use super::error::{GpuError, GpuErrorKind};
use super::ffi;
use crate::sync::unmodelled::Arc;

/// PTX assembly text, ready for [`Device::load_ptx`]. Contains no NUL byte.
#[derive(Clone, PartialEq, Eq)]
pub struct Ptx {
    text: String,
}

impl Ptx {
    /// Wraps PTX assembly written by hand or produced elsewhere.
    ///
    /// # Errors
    ///
    /// [`GpuErrorKind::InvalidArgument`] if the text contains a NUL byte.
    pub fn from_text(text: impl Into<String>) -> Result<Ptx, GpuError> {
        let text = text.into();
        if text.contains('\0') {
            return Err(GpuError::invalid_argument("PTX text contains a NUL byte"));
        }
        Ok(Ptx { text })
    }

    /// The PTX text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Ptx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ptx")
            .field("bytes", &self.text.len())
            .finish()
    }
}

/// Whether NVRTC can be loaded, so that [`compile`] can work.
pub fn compiler_available() -> bool {
    ffi::nvrtc_library_present()
}

/// Compiles CUDA C++ source to PTX with NVRTC, at run time.
///
/// Kernels meant to be loaded by name should be declared `extern "C"` so that
/// their names are not mangled.
///
/// # Examples
///
/// ```
/// use vedart_executors::gpu;
///
/// match gpu::compile(r#"extern "C" __global__ void noop() {}"#) {
///     Ok(ptx) => assert!(ptx.as_str().contains("noop")),
///     Err(e) => assert!(e.is_no_compiler()),
/// }
/// ```
///
/// # Errors
///
/// - [`GpuErrorKind::InvalidArgument`] if `source` contains a NUL byte;
/// - [`GpuErrorKind::NoCompiler`] if NVRTC cannot be loaded;
/// - [`GpuErrorKind::Compile`] if NVRTC rejects the source
///   ([`GpuError::compile_log`] has the log).
pub fn compile(source: &str) -> Result<Ptx, GpuError> {
    if source.contains('\0') {
        return Err(GpuError::invalid_argument(
            "CUDA source contains a NUL byte",
        ));
    }
    if !compiler_available() {
        return Err(GpuError::no_compiler());
    }
    let compiled = catch_unwind(AssertUnwindSafe(|| {
        compile_ptx_with_opts(source, CompileOptions::default())
    }))
    .map_err(|_| GpuError::new(GpuErrorKind::Compile, "NVRTC failed unexpectedly"))?
    .map_err(GpuError::compile)?;
    let bytes = compiled
        .as_bytes()
        .ok_or_else(|| GpuError::new(GpuErrorKind::Compile, "NVRTC returned no PTX"))?;
    let text = String::from_utf8_lossy(bytes);
    Ptx::from_text(text.trim_end_matches('\0'))
}

/// A module loaded on a device, from [`Device::load_ptx`] or [`Device::compile`].
#[derive(Clone)]
pub struct Module {
    inner: Arc<CudaModule>,
    device: Device,
}

impl Module {
    pub(super) fn new(inner: Arc<CudaModule>, device: Device) -> Self {
        Self { inner, device }
    }

    /// Looks up the kernel `name` (an `extern "C"` name, or a mangled one).
    ///
    /// # Errors
    ///
    /// [`GpuErrorKind::InvalidArgument`] for a name with a NUL byte; a driver
    /// error (`CUDA_ERROR_NOT_FOUND`) if the module has no such kernel.
    pub fn kernel(&self, name: &str) -> Result<Kernel, GpuError> {
        if name.contains('\0') {
            return Err(GpuError::invalid_argument(
                "kernel name contains a NUL byte",
            ));
        }
        let function = self.inner.load_function(name)?;
        Ok(Kernel {
            function,
            device: self.device.clone(),
            name: name.to_owned(),
        })
    }

    /// The device the module is loaded on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("device", &self.device.ordinal())
            .finish_non_exhaustive()
    }
}

/// A kernel of a loaded module; launch it with [`Stream::launch_builder`](super::Stream::launch_builder).
#[derive(Clone)]
pub struct Kernel {
    function: CudaFunction,
    device: Device,
    name: String,
}

impl Kernel {
    /// The kernel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device the kernel is loaded on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub(super) fn cudarc(&self) -> &CudaFunction {
        &self.function
    }
}

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.name)
            .field("device", &self.device.ordinal())
            .finish()
    }
}

/// Grid and block dimensions of a kernel launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    /// Blocks in the grid, `(x, y, z)`.
    pub grid_dim: (u32, u32, u32),
    /// Threads per block, `(x, y, z)`.
    pub block_dim: (u32, u32, u32),
    /// Dynamic shared memory per block, in bytes.
    pub shared_mem_bytes: u32,
}

impl LaunchConfig {
    /// Threads per block of [`for_elements`](Self::for_elements).
    pub const THREADS_PER_BLOCK: u32 = 256;

    /// One thread per element in a one-dimensional grid of
    /// [`THREADS_PER_BLOCK`](Self::THREADS_PER_BLOCK)-thread blocks (at least one block).
    ///
    /// # Examples
    ///
    /// ```
    /// use vedart_executors::gpu::LaunchConfig;
    ///
    /// let config = LaunchConfig::for_elements(1000);
    /// assert_eq!(config.grid_dim, (4, 1, 1));
    /// assert_eq!(config.block_dim, (256, 1, 1));
    /// ```
    pub fn for_elements(n: u32) -> Self {
        Self {
            grid_dim: (n.div_ceil(Self::THREADS_PER_BLOCK).max(1), 1, 1),
            block_dim: (Self::THREADS_PER_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    pub(super) fn to_cudarc(self) -> cudarc::driver::LaunchConfig {
        cudarc::driver::LaunchConfig {
            grid_dim: self.grid_dim,
            block_dim: self.block_dim,
            shared_mem_bytes: self.shared_mem_bytes,
        }
    }
}
