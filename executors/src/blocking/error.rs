//! Errors of the blocking pool: invalid configuration, and jobs it refused.

use std::fmt;
use std::io;

use crate::sync::unmodelled::Mutex;

/// A boxed job, as the pool stores and hands back.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// An invalid blocking-pool configuration, from [`BlockingPoolBuilder::build`]
/// or [`BlockingPool::set_bounds`].
///
/// [`field`](Self::field) names the offending setting (`"max_workers"` or
/// `"min_workers"`), so that front ends such as Python's `Config` can report it.
///
/// [`BlockingPoolBuilder::build`]: super::BlockingPoolBuilder::build
/// [`BlockingPool::set_bounds`]: super::BlockingPool::set_bounds
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingPoolError {
    field: &'static str,
    reason: ErrorReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorReason {
    MaxIsZero,
    MinAboveMax { min: usize, max: usize },
}

impl BlockingPoolError {
    pub(crate) fn max_is_zero() -> Self {
        Self {
            field: "max_workers",
            reason: ErrorReason::MaxIsZero,
        }
    }

    pub(crate) fn min_above_max(min: usize, max: usize) -> Self {
        Self {
            field: "min_workers",
            reason: ErrorReason::MinAboveMax { min, max },
        }
    }

    /// The name of the setting that is invalid: `"max_workers"` or `"min_workers"`.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for BlockingPoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            ErrorReason::MaxIsZero => write!(f, "max_workers must be at least 1"),
            ErrorReason::MinAboveMax { min, max } => {
                write!(f, "min_workers ({min}) must not exceed max_workers ({max})")
            }
        }
    }
}

impl std::error::Error for BlockingPoolError {}

/// A job that [`BlockingPool::execute`] did not accept, handed back to the caller.
///
/// The pool refuses a job after [`BlockingPool::shutdown`] (or after its last
/// handle was dropped), and when it has no thread at all and the operating
/// system refuses to start one.
///
/// [`BlockingPool::execute`]: super::BlockingPool::execute
/// [`BlockingPool::shutdown`]: super::BlockingPool::shutdown
pub struct RejectedJob {
    /// Behind a mutex only so that the error is `Sync` (as `Box<dyn Error +
    /// Send + Sync>` wants); it is taken by value, never locked concurrently.
    job: Mutex<Job>,
    spawn_error: Option<io::Error>,
}

impl RejectedJob {
    pub(crate) fn shutdown(job: Job) -> Self {
        Self {
            job: Mutex::new(job),
            spawn_error: None,
        }
    }

    pub(crate) fn spawn_failed(job: Job, error: io::Error) -> Self {
        Self {
            job: Mutex::new(job),
            spawn_error: Some(error),
        }
    }

    /// Whether the pool refused the job because it is shut down.
    pub fn is_shutdown(&self) -> bool {
        self.spawn_error.is_none()
    }

    /// Whether the pool refused the job because no worker thread could be started.
    pub fn is_spawn_failure(&self) -> bool {
        self.spawn_error.is_some()
    }

    /// Takes the job back, for the caller to run or drop.
    pub fn into_job(self) -> Job {
        self.job
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for RejectedJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RejectedJob")
            .field("spawn_error", &self.spawn_error)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for RejectedJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.spawn_error {
            None => write!(f, "the blocking pool is shut down"),
            Some(error) => write!(f, "the blocking pool could not start a thread: {error}"),
        }
    }
}

impl std::error::Error for RejectedJob {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.spawn_error
            .as_ref()
            .map(|error| error as &(dyn std::error::Error + 'static))
    }
}
