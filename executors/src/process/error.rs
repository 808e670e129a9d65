//! [`ProcessError`]: why a process-pool call failed.
//!
//! An opaque struct over a private representation, like `std::io::Error`: match
//! on [`ProcessError::kind`] and read the details through accessors, so new
//! details can be added without breaking callers. Errors are cheap to clone
//! (the large parts sit behind `Arc`), because one child's death fails every
//! call that was in flight on it with the same error.

use crate::sync::unmodelled::Arc;
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use super::frame::FrameError;

/// The category of a [`ProcessError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcessErrorKind {
    /// The child running the call died (crashed, was killed, or exited) before
    /// answering. See [`ProcessError::pid`], [`ProcessError::exit_status`] and
    /// [`ProcessError::stderr_tail`].
    WorkerDied,
    /// The child broke the frame protocol (garbage, an oversized frame, an
    /// answer to an unknown request); it was killed and replaced.
    Protocol,
    /// The call was cancelled through its [`CancelHandle`](super::CancelHandle),
    /// or it was a targeted call whose child was terminated by another call's
    /// cancellation.
    Cancelled,
    /// A child could not be started. See [`std::error::Error::source`].
    Spawn,
    /// The child answered with an error frame; its payload is in
    /// [`ProcessError::remote_payload`].
    Remote,
    /// The pool was shut down or dropped.
    PoolClosed,
    /// The request (or context), or the child's answer, is larger than the
    /// pool's maximum message size
    /// ([`ProcessPoolBuilder::max_message_size`](super::ProcessPoolBuilder::max_message_size)).
    /// A too large answer is dropped as it arrives; the child stays.
    TooLarge,
    /// The call had started on a child that was terminated to cancel *another*
    /// call, and its retry budget was spent, so it was not sent again: a call
    /// runs at most once unless it allows retries
    /// ([`Call::retries`](super::Call::retries)). It may have run in part. See
    /// [`ProcessError::pid`].
    Interrupted,
    /// The call did not resolve within its timeout
    /// ([`Call::timeout`](super::Call::timeout)); the child that had its
    /// request (see [`ProcessError::pid`]) is terminated and replaced. See
    /// [`ProcessError::timeout`].
    TimedOut,
}

/// Why a process-pool call failed. See [`ProcessErrorKind`].
///
/// # Examples
///
/// ```no_run
/// use vedart_executors::process::{ProcessErrorKind, ProcessPool};
///
/// # futures::executor::block_on(async {
/// let pool = ProcessPool::builder("my-worker").build()?;
/// match pool.call(b"job".to_vec()).await {
///     Ok(answer) => println!("{} bytes", answer.len()),
///     Err(err) if err.kind() == ProcessErrorKind::WorkerDied => {
///         eprintln!("child {:?} died: {:?}", err.pid(), err.exit_status());
///         for line in err.stderr_tail() {
///             eprintln!("  {line}");
///         }
///     }
///     Err(err) => return Err(err),
/// }
/// # Ok::<(), vedart_executors::process::ProcessError>(())
/// # });
/// ```
#[derive(Clone)]
pub struct ProcessError {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    WorkerDied {
        pid: u32,
        status: Option<ExitStatus>,
        stderr: Arc<[String]>,
    },
    Protocol {
        pid: u32,
        detail: Arc<str>,
        frame: Option<FrameError>,
    },
    Cancelled,
    Spawn(Arc<io::Error>),
    Remote {
        pid: u32,
        payload: Arc<Vec<u8>>,
    },
    PoolClosed,
    TooLarge {
        len: usize,
        max: usize,
    },
    AnswerTooLarge {
        pid: u32,
        len: u64,
        max: u64,
    },
    Interrupted {
        pid: u32,
    },
    TimedOut {
        after: Duration,
        pid: Option<u32>,
    },
}

impl ProcessError {
    pub(crate) fn worker_died(pid: u32, status: Option<ExitStatus>, stderr: Arc<[String]>) -> Self {
        ProcessError {
            repr: Repr::WorkerDied {
                pid,
                status,
                stderr,
            },
        }
    }

    pub(crate) fn protocol(
        pid: u32,
        detail: impl Into<Arc<str>>,
        frame: Option<FrameError>,
    ) -> Self {
        ProcessError {
            repr: Repr::Protocol {
                pid,
                detail: detail.into(),
                frame,
            },
        }
    }

    pub(crate) fn cancelled() -> Self {
        ProcessError {
            repr: Repr::Cancelled,
        }
    }

    pub(crate) fn spawn(err: Arc<io::Error>) -> Self {
        ProcessError {
            repr: Repr::Spawn(err),
        }
    }

    pub(crate) fn remote(pid: u32, payload: Vec<u8>) -> Self {
        ProcessError {
            repr: Repr::Remote {
                pid,
                payload: Arc::new(payload),
            },
        }
    }

    pub(crate) fn pool_closed() -> Self {
        ProcessError {
            repr: Repr::PoolClosed,
        }
    }

    pub(crate) fn too_large(len: usize, max: usize) -> Self {
        ProcessError {
            repr: Repr::TooLarge { len, max },
        }
    }

    pub(crate) fn answer_too_large(pid: u32, len: u64, max: u64) -> Self {
        ProcessError {
            repr: Repr::AnswerTooLarge { pid, len, max },
        }
    }

    pub(crate) fn timed_out(after: Duration, pid: Option<u32>) -> Self {
        ProcessError {
            repr: Repr::TimedOut { after, pid },
        }
    }

    pub(crate) fn interrupted(pid: u32) -> Self {
        ProcessError {
            repr: Repr::Interrupted { pid },
        }
    }

    /// The category of the error.
    pub fn kind(&self) -> ProcessErrorKind {
        match &self.repr {
            Repr::WorkerDied { .. } => ProcessErrorKind::WorkerDied,
            Repr::Protocol { .. } => ProcessErrorKind::Protocol,
            Repr::Cancelled => ProcessErrorKind::Cancelled,
            Repr::Spawn(_) => ProcessErrorKind::Spawn,
            Repr::Remote { .. } => ProcessErrorKind::Remote,
            Repr::PoolClosed => ProcessErrorKind::PoolClosed,
            Repr::TooLarge { .. } | Repr::AnswerTooLarge { .. } => ProcessErrorKind::TooLarge,
            Repr::Interrupted { .. } => ProcessErrorKind::Interrupted,
            Repr::TimedOut { .. } => ProcessErrorKind::TimedOut,
        }
    }

    /// Whether the child died before answering.
    pub fn is_worker_died(&self) -> bool {
        self.kind() == ProcessErrorKind::WorkerDied
    }

    /// Whether the child answered with an error frame.
    pub fn is_remote(&self) -> bool {
        self.kind() == ProcessErrorKind::Remote
    }

    /// Whether the call was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.kind() == ProcessErrorKind::Cancelled
    }

    /// Whether the call timed out.
    pub fn is_timed_out(&self) -> bool {
        self.kind() == ProcessErrorKind::TimedOut
    }

    /// The timeout that passed (`TimedOut`).
    pub fn timeout(&self) -> Option<Duration> {
        match &self.repr {
            Repr::TimedOut { after, .. } => Some(*after),
            _ => None,
        }
    }

    /// The pid of the child concerned (`WorkerDied`, `Protocol`, `Remote`,
    /// `Interrupted`, and `TimedOut` when a child had the request).
    pub fn pid(&self) -> Option<u32> {
        match &self.repr {
            Repr::TimedOut { pid, .. } => *pid,
            Repr::WorkerDied { pid, .. }
            | Repr::Protocol { pid, .. }
            | Repr::Remote { pid, .. }
            | Repr::AnswerTooLarge { pid, .. }
            | Repr::Interrupted { pid } => Some(*pid),
            _ => None,
        }
    }

    /// How a dead child ended (`WorkerDied`), when it could be reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match &self.repr {
            Repr::WorkerDied { status, .. } => *status,
            _ => None,
        }
    }

    /// The dead child's exit code, if it exited normally.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_status().and_then(|status| status.code())
    }

    /// The signal that killed the dead child, if a signal did.
    pub fn signal(&self) -> Option<i32> {
        self.exit_status().and_then(|status| status.signal())
    }

    /// The last lines the dead child wrote to its stderr (`WorkerDied`), oldest
    /// first; empty for other kinds.
    pub fn stderr_tail(&self) -> &[String] {
        match &self.repr {
            Repr::WorkerDied { stderr, .. } => stderr,
            _ => &[],
        }
    }

    /// The payload of the child's error frame (`Remote`).
    pub fn remote_payload(&self) -> Option<&[u8]> {
        match &self.repr {
            Repr::Remote { payload, .. } => Some(payload),
            _ => None,
        }
    }

    /// Takes the payload of the child's error frame (`Remote`), without a copy
    /// unless the error was cloned; any other kind is returned unchanged.
    ///
    /// # Errors
    ///
    /// Returns `self` if this is not a `Remote` error.
    pub fn into_remote_payload(self) -> Result<Vec<u8>, ProcessError> {
        match self.repr {
            Repr::Remote { payload, .. } => {
                Ok(Arc::try_unwrap(payload).unwrap_or_else(|shared| (*shared).clone()))
            }
            repr => Err(ProcessError { repr }),
        }
    }

    /// The frame-level error behind a `Protocol` error, when there is one.
    pub fn frame_error(&self) -> Option<&FrameError> {
        match &self.repr {
            Repr::Protocol { frame, .. } => frame.as_ref(),
            _ => None,
        }
    }

    /// The size of the request or answer and the maximum message size
    /// (`TooLarge`).
    pub fn size(&self) -> Option<(usize, usize)> {
        match &self.repr {
            Repr::TooLarge { len, max } => Some((*len, *max)),
            Repr::AnswerTooLarge { len, max, .. } => Some((
                usize::try_from(*len).unwrap_or(usize::MAX),
                usize::try_from(*max).unwrap_or(usize::MAX),
            )),
            _ => None,
        }
    }
}

impl fmt::Debug for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ProcessError");
        d.field("kind", &self.kind());
        match &self.repr {
            Repr::WorkerDied {
                pid,
                status,
                stderr,
            } => d
                .field("pid", pid)
                .field("status", status)
                .field("stderr", stderr),
            Repr::Protocol { pid, detail, .. } => d.field("pid", pid).field("detail", detail),
            Repr::Spawn(err) => d.field("source", err),
            Repr::Remote { pid, payload } => {
                d.field("pid", pid).field("payload_len", &payload.len())
            }
            Repr::TooLarge { len, max } => d.field("len", len).field("max", max),
            Repr::AnswerTooLarge { pid, len, max } => {
                d.field("pid", pid).field("len", len).field("max", max)
            }
            Repr::Interrupted { pid } => d.field("pid", pid),
            Repr::TimedOut { after, pid } => d.field("after", after).field("pid", pid),
            Repr::Cancelled | Repr::PoolClosed => &mut d,
        };
        d.finish()
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::WorkerDied {
                pid,
                status,
                stderr,
            } => {
                write!(f, "worker process {pid} died")?;
                match status.map(|s| (s.code(), s.signal())) {
                    Some((Some(code), _)) => write!(f, " with exit code {code}")?,
                    Some((None, Some(signal))) => write!(f, " from signal {signal}")?,
                    _ => write!(f, " (exit status unknown)")?,
                }
                if let Some(last) = stderr.last() {
                    write!(f, "; last stderr line: {last}")?;
                }
                Ok(())
            }
            Repr::Protocol { pid, detail, .. } => {
                write!(f, "worker process {pid} broke the frame protocol: {detail}")
            }
            Repr::Cancelled => f.write_str("the process-pool call was cancelled"),
            Repr::Spawn(err) => write!(f, "cannot start a worker process: {err}"),
            Repr::Remote { pid, payload } => write!(
                f,
                "worker process {pid} answered with an error ({} bytes)",
                payload.len()
            ),
            Repr::PoolClosed => f.write_str("the process pool is shut down"),
            Repr::TooLarge { len, max } => write!(
                f,
                "request of {len} bytes exceeds the pool's maximum message size of {max} \
                 bytes (ProcessPoolBuilder::max_message_size raises it)"
            ),
            Repr::AnswerTooLarge { pid, len, max } => write!(
                f,
                "the answer of worker process {pid} ({len} bytes) exceeds the pool's maximum \
                 message size of {max} bytes (ProcessPoolBuilder::max_message_size raises it); \
                 it was dropped and the worker kept"
            ),
            Repr::TimedOut { after, pid } => {
                write!(f, "the process-pool call timed out after {after:?}")?;
                match pid {
                    Some(pid) => write!(
                        f,
                        "; worker process {pid}, which had it, is terminated and replaced"
                    ),
                    None => f.write_str(" before any worker process took it"),
                }
            }
            Repr::Interrupted { pid } => write!(
                f,
                "worker process {pid} was terminated to cancel another call while this call \
                 was running on it; the call had started, so it was not sent again (calls \
                 run at most once unless they allow retries)"
            ),
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.repr {
            Repr::Spawn(err) => Some(&**err),
            Repr::Protocol {
                frame: Some(frame), ..
            } => Some(frame),
            _ => None,
        }
    }
}
