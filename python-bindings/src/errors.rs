//! Errors raised from Rust, as the Python classes of `vedart.exceptions`.
//!
//! The exception hierarchy is defined in Python (`python/vedart/exceptions.py`)
//! so that its classes can inherit from two bases (`ConfigError` is both a
//! `VedaError` and a `ValueError`; `CancelledError` is both a `VedaError` and a
//! `concurrent.futures.CancelledError`). Rust looks each class up once, on first
//! use, and raises it through [`VedaErrorKind`]. The extension module itself never
//! imports `vedart.exceptions` at import time, so there is no import cycle.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The exception classes Rust raises, by their name in `vedart.exceptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VedaErrorKind {
    /// `vedart.exceptions.VedaError`, the base class.
    Base,
    /// `vedart.exceptions.CancelledError`: the work was cancelled.
    Cancelled,
    /// `vedart.exceptions.RuntimeStateError`: the runtime is shut down.
    RuntimeState,
    /// `vedart.exceptions.ExecutorError`: an executor is not available, e.g.
    /// the OS refused the threads or processes it needs.
    Executor,
    /// `vedart.exceptions.ReplayError`: a replay diverged from its trace.
    Replay,
}

impl VedaErrorKind {
    fn class_name(self) -> &'static str {
        match self {
            VedaErrorKind::Base => "VedaError",
            VedaErrorKind::Cancelled => "CancelledError",
            VedaErrorKind::RuntimeState => "RuntimeStateError",
            VedaErrorKind::Executor => "ExecutorError",
            VedaErrorKind::Replay => "ReplayError",
        }
    }

    fn cell(self) -> &'static PyOnceLock<Py<PyType>> {
        static BASE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static CANCELLED: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static RUNTIME_STATE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static EXECUTOR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        static REPLAY: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        match self {
            VedaErrorKind::Base => &BASE,
            VedaErrorKind::Cancelled => &CANCELLED,
            VedaErrorKind::RuntimeState => &RUNTIME_STATE,
            VedaErrorKind::Executor => &EXECUTOR,
            VedaErrorKind::Replay => &REPLAY,
        }
    }

    /// Builds the exception with `message`. If `vedart.exceptions` cannot be
    /// imported (a broken installation), the import error is returned instead,
    /// which still names the problem.
    pub(crate) fn err(self, py: Python<'_>, message: impl Into<String>) -> PyErr {
        match self
            .cell()
            .import(py, "vedart.exceptions", self.class_name())
        {
            Ok(class) => PyErr::from_type(class.clone(), message.into()),
            Err(import_error) => import_error,
        }
    }
}

/// `vedart.exceptions.CancelledError` with a message.
pub(crate) fn cancelled_error(py: Python<'_>, message: &str) -> PyErr {
    VedaErrorKind::Cancelled.err(py, message.to_owned())
}

/// `vedart.exceptions.RuntimeStateError` with a message.
pub(crate) fn runtime_state_error(py: Python<'_>, message: &str) -> PyErr {
    VedaErrorKind::RuntimeState.err(py, message.to_owned())
}

/// The text of a caught Rust panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// `vedart.exceptions.VedaError` reporting a Rust panic inside VedaRT itself.
pub(crate) fn internal_panic(py: Python<'_>, payload: &(dyn std::any::Any + Send)) -> PyErr {
    VedaErrorKind::Base.err(
        py,
        format!("internal error in vedart: {}", panic_message(payload)),
    )
}
