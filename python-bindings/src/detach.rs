//! The one place where the bindings release the interpreter to wait.
//!
//! Long or blocking Rust work (waiting for a task, a group, or the pool to shut
//! down) goes through [`wait_detached`], the counterpart of polars'
//! `enter_polars`:
//!
//! 1. Release the interpreter and block for at most [`SIGNAL_CHECK_INTERVAL`]
//!    (or until the deadline, if sooner) in the caller's `step`.
//! 2. If `step` reports completion, return its value.
//! 3. Otherwise re-attach and run Python's pending signal handlers
//!    (`PyErr_CheckSignals`): on the main thread a Ctrl+C becomes
//!    `KeyboardInterrupt` here, at most one interval after the signal.
//! 4. Stop at the deadline, else go back to 1.
//!
//! Other threads are never starved of the interpreter while we wait, and a
//! signal handler's exception propagates to the caller unchanged.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How long a waiting thread blocks before it re-attaches to look for signals
/// and for cancellation that arrives without a wake-up (a cancelled parent).
///
/// A Ctrl+C therefore turns into `KeyboardInterrupt` within this interval plus
/// the time to re-acquire the interpreter, well within the 0.5 s VedaRT promises.
pub(crate) const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Waits, with the interpreter released, until `step` returns `Some`.
///
/// `step(limit)` must block for at most `limit` and return `Some(value)` once the
/// awaited condition holds. Returns `Ok(None)` if `deadline` passes first.
///
/// # Errors
///
/// Whatever a Python signal handler raises (on the main thread, Ctrl+C raises
/// `KeyboardInterrupt`).
pub(crate) fn wait_detached<T, F>(
    py: Python<'_>,
    deadline: Option<Instant>,
    mut step: F,
) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(Duration) -> Option<T> + Send,
{
    loop {
        let limit = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                left.min(SIGNAL_CHECK_INTERVAL)
            }
            None => SIGNAL_CHECK_INTERVAL,
        };
        if let Some(value) = py.detach(|| step(limit)) {
            return Ok(Some(value));
        }
        py.check_signals()?;
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(None);
        }
    }
}

/// Converts a timeout in seconds from Python (`None` for no limit) into a deadline.
///
/// # Errors
///
/// `ValueError` for a negative or non-finite timeout.
pub(crate) fn deadline_from_timeout(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            // Durations beyond the clock's range mean "no limit".
            Ok(Duration::try_from_secs_f64(seconds)
                .ok()
                .and_then(|duration| Instant::now().checked_add(duration)))
        }
        Some(seconds) => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds, got {seconds}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_become_deadlines() {
        assert_eq!(deadline_from_timeout(None).ok(), Some(None));
        let soon = deadline_from_timeout(Some(0.5))
            .ok()
            .flatten()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        assert!(soon.is_some_and(|left| left <= Duration::from_millis(500)));
        assert!(deadline_from_timeout(Some(-1.0)).is_err());
        assert!(deadline_from_timeout(Some(f64::NAN)).is_err());
        // Beyond the clock's range: no limit rather than an error.
        assert_eq!(deadline_from_timeout(Some(1e300)).ok(), Some(None));
    }

    #[test]
    fn signal_checks_are_frequent_enough_for_ctrl_c() {
        assert!(SIGNAL_CHECK_INTERVAL <= Duration::from_millis(100));
    }
}
