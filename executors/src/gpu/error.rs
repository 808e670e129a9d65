//! The GPU module's error: an opaque struct over a kind, with predicates.

use std::fmt;

use cudarc::driver::DriverError;
use cudarc::nvrtc::CompileError;

/// What went wrong, as returned by [`GpuError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GpuErrorKind {
    /// The CUDA driver library (`libcuda`) could not be loaded: no NVIDIA driver
    /// is installed, or it is not on the loader's path.
    NoDriver,
    /// The driver loaded but reports no CUDA device.
    NoDevice,
    /// The device ordinal is not below the number of devices.
    InvalidOrdinal,
    /// A CUDA driver call failed, or work on a stream failed, with this
    /// `CUresult` code.
    Driver(u32),
    /// NVRTC (`libnvrtc`) could not be loaded, so CUDA C++ cannot be compiled at
    /// run time. PTX can still be loaded with [`Device::load_ptx`](super::Device::load_ptx).
    NoCompiler,
    /// NVRTC rejected the source; [`GpuError::compile_log`] has its log.
    Compile,
    /// An argument the caller passed cannot work: mismatched lengths, objects of
    /// different devices, an interior NUL byte in a name or source, and so on.
    InvalidArgument,
}

/// An error of the GPU module. It never comes from a panic: every failure of
/// the driver, of NVRTC or of the arguments is one of these.
///
/// # Examples
///
/// ```
/// use vedart_executors::gpu::{Device, GpuErrorKind};
///
/// match Device::open(0) {
///     Ok(device) => println!("running on {}", device.name().unwrap_or_default()),
///     Err(e) if e.is_no_driver() || e.is_no_device() => println!("no GPU here: {e}"),
///     Err(e) => assert!(matches!(e.kind(), GpuErrorKind::Driver(_))),
/// }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct GpuError {
    kind: GpuErrorKind,
    detail: String,
}

impl GpuError {
    pub(crate) fn new(kind: GpuErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    pub(crate) fn no_driver() -> Self {
        Self::new(
            GpuErrorKind::NoDriver,
            "no CUDA driver: the libcuda shared library could not be loaded",
        )
    }

    pub(crate) fn no_device() -> Self {
        Self::new(GpuErrorKind::NoDevice, "the CUDA driver reports no device")
    }

    pub(crate) fn invalid_ordinal(ordinal: usize, count: usize) -> Self {
        Self::new(
            GpuErrorKind::InvalidOrdinal,
            format!("device ordinal {ordinal} is out of range: there are {count} CUDA devices"),
        )
    }

    pub(crate) fn no_compiler() -> Self {
        Self::new(
            GpuErrorKind::NoCompiler,
            "NVRTC is not available: the libnvrtc shared library could not be loaded",
        )
    }

    pub(crate) fn invalid_argument(what: impl Into<String>) -> Self {
        Self::new(GpuErrorKind::InvalidArgument, what)
    }

    /// A failed driver call, named by cudarc's enum.
    pub(crate) fn driver(error: DriverError) -> Self {
        let code = error.0 as u32;
        Self::new(
            GpuErrorKind::Driver(code),
            format!("CUDA driver error {:?} ({code})", error.0),
        )
    }

    /// A failure reported as a raw `CUresult` (by a stream callback).
    pub(crate) fn stream_failure(code: u32, name: Option<String>) -> Self {
        let name = name.unwrap_or_else(|| "unknown CUresult".to_owned());
        Self::new(
            GpuErrorKind::Driver(code),
            format!("CUDA stream work failed: {name} ({code})"),
        )
    }

    pub(crate) fn compile(error: CompileError) -> Self {
        match error {
            CompileError::CompileError { log, .. } => Self::new(
                GpuErrorKind::Compile,
                log.to_string_lossy().trim_end().to_owned(),
            ),
            other => Self::new(GpuErrorKind::Compile, format!("NVRTC failed: {other:?}")),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> GpuErrorKind {
        self.kind
    }

    /// No CUDA driver library could be loaded.
    pub fn is_no_driver(&self) -> bool {
        self.kind == GpuErrorKind::NoDriver
    }

    /// The driver is present but there is no CUDA device.
    pub fn is_no_device(&self) -> bool {
        self.kind == GpuErrorKind::NoDevice
    }

    /// The device ordinal was out of range.
    pub fn is_invalid_ordinal(&self) -> bool {
        self.kind == GpuErrorKind::InvalidOrdinal
    }

    /// The `CUresult` code of a failed driver call or stream operation.
    pub fn driver_code(&self) -> Option<u32> {
        match self.kind {
            GpuErrorKind::Driver(code) => Some(code),
            _ => None,
        }
    }

    /// NVRTC is not installed.
    pub fn is_no_compiler(&self) -> bool {
        self.kind == GpuErrorKind::NoCompiler
    }

    /// NVRTC rejected the source.
    pub fn is_compile(&self) -> bool {
        self.kind == GpuErrorKind::Compile
    }

    /// The caller passed something that cannot work.
    pub fn is_invalid_argument(&self) -> bool {
        self.kind == GpuErrorKind::InvalidArgument
    }

    /// NVRTC's log, for a [`GpuErrorKind::Compile`] error.
    pub fn compile_log(&self) -> Option<&str> {
        (self.kind == GpuErrorKind::Compile).then_some(self.detail.as_str())
    }
}

impl From<DriverError> for GpuError {
    fn from(error: DriverError) -> Self {
        Self::driver(error)
    }
}

impl fmt::Debug for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuError")
            .field("kind", &self.kind)
            .field("detail", &self.detail)
            .finish()
    }
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            GpuErrorKind::Compile => write!(f, "CUDA kernel compilation failed: {}", self.detail),
            _ => f.write_str(&self.detail),
        }
    }
}

impl std::error::Error for GpuError {}
