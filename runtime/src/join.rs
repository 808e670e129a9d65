//! Awaiting a task's result, and cancelling it: [`JoinHandle`], [`AbortHandle`]
//! and [`JoinError`].
//!
//! # How a result travels
//!
//! A task's future is wrapped (see `task`) so that its output is always a
//! `Result<T, JoinError>`: a panic is caught inside the task and becomes
//! `Err(JoinError)` carrying the payload, and an abort makes the next poll
//! return `Err(cancelled)`. async-task stores that output in the task's own
//! allocation and wakes the [`JoinHandle`] awaiting it. If the task is dropped
//! without completing (the runtime shut down), async-task reports "no output"
//! and the handle turns that into a cancelled `JoinError`. So a handle always
//! resolves, and never to a value that was not produced.
//!
//! # Abort
//!
//! [`JoinHandle::abort`] sets a flag in the task's header and wakes the task.
//! The flag is read at the start of every poll of the wrapper, so the task's
//! future is dropped (not polled again) the next time the task runs; a task
//! that already completed keeps its output.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

use crate::task_core::{Header, TaskId};

/// An owned permission to await a spawned task's output.
///
/// Awaiting it yields `Ok(output)`, or `Err(JoinError)` if the task panicked or
/// was cancelled (aborted, or dropped by a runtime shutdown). Dropping the
/// handle *detaches* the task: it keeps running, and its output is dropped.
///
/// # Examples
///
#[doc = example!()]
/// let rt = vedart::Runtime::new().unwrap();
/// let answer = rt.block_on(async {
///     let handle = vedart::spawn(async { 6 * 7 });
///     handle.await.unwrap()
/// });
/// assert_eq!(answer, 42);
/// ```
#[must_use = "dropping a JoinHandle detaches the task; call `.await` or drop it explicitly"]
pub struct JoinHandle<T> {
    /// async-task's handle; `None` only inside `drop`.
    task: Option<async_task::FallibleTask<Result<T, JoinError>, Header>>,
    /// Aborts the task (`FallibleTask` does not expose the header).
    abort: AbortHandle,
}

impl<T> JoinHandle<T> {
    /// Wraps async-task's handle; `waker` must wake the same task.
    pub(crate) fn new(task: async_task::Task<Result<T, JoinError>, Header>, waker: Waker) -> Self {
        let abort = AbortHandle {
            header: NonNull::from(task.metadata()),
            waker,
        };
        JoinHandle {
            task: Some(task.fallible()),
            abort,
        }
    }

    fn task(&self) -> &async_task::FallibleTask<Result<T, JoinError>, Header> {
        self.task
            .as_ref()
            .expect("JoinHandle's task is present until drop")
    }

    /// Cancels the task: its future is dropped the next time it would run, and
    /// awaiting this handle gives a cancelled [`JoinError`]. A task that
    /// already completed is unaffected (its output stays available).
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// let rt = vedart::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     let handle = vedart::spawn(std::future::pending::<()>());
    ///     handle.abort();
    ///     assert!(handle.await.unwrap_err().is_cancelled());
    /// });
    /// ```
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// Whether the task has finished (completed, panicked, or been cancelled).
    /// When true, awaiting the handle returns at once.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// let rt = vedart::Runtime::new().unwrap();
    /// let handle = rt.spawn(async { 1 });
    /// rt.block_on(async {
    ///     while !handle.is_finished() {
    ///         vedart::yield_now().await;
    ///     }
    /// });
    /// assert_eq!(rt.block_on(handle).unwrap(), 1);
    /// ```
    pub fn is_finished(&self) -> bool {
        self.task().is_finished()
    }

    /// The task's id, unique within its runtime (see [`TaskId`]).
    pub fn id(&self) -> TaskId {
        self.abort.id()
    }

    /// A handle that can abort the task without owning its output.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// let rt = vedart::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     let handle = vedart::spawn(std::future::pending::<()>());
    ///     let aborter = handle.abort_handle();
    ///     std::thread::spawn(move || aborter.abort()).join().unwrap();
    ///     assert!(handle.await.unwrap_err().is_cancelled());
    /// });
    /// ```
    pub fn abort_handle(&self) -> AbortHandle {
        self.abort.clone()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let task = self
            .task
            .as_mut()
            .expect("JoinHandle's task is present until drop");
        match Pin::new(task).poll(cx) {
            Poll::Ready(Some(result)) => Poll::Ready(result),
            // The task was dropped before completing: runtime shutdown.
            Poll::Ready(None) => Poll::Ready(Err(JoinError::cancelled())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Aborts a task from anywhere, without access to its output. See
/// [`JoinHandle::abort_handle`].
#[derive(Clone)]
pub struct AbortHandle {
    /// The task's header.
    ///
    /// # Invariant
    ///
    /// Points into the task's allocation, which `waker` keeps alive: async-task
    /// frees a task (header and metadata included) only once every `Runnable`,
    /// `Waker` and `Task` referring to it is gone.
    header: NonNull<Header>,
    waker: Waker,
}

// SAFETY: `AbortHandle` only reads the header through `&Header`, and `Header`
// is `Sync` (its fields are an atomic and an `Arc` of a `Sync` type); `Waker`
// is `Send + Sync`.
unsafe impl Send for AbortHandle {}
// SAFETY: as above.
unsafe impl Sync for AbortHandle {}

impl AbortHandle {
    /// Cancels the task, like [`JoinHandle::abort`]: sets the abort flag and
    /// wakes the task so that it notices.
    pub fn abort(&self) {
        if self.header().abort() {
            self.waker.wake_by_ref();
        }
    }

    /// The task's id, unique within its runtime (see [`TaskId`]).
    pub fn id(&self) -> TaskId {
        self.header().id
    }

    fn header(&self) -> &Header {
        // SAFETY: by the field's invariant the header is alive while `self.waker` is.
        unsafe { self.header.as_ref() }
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle").finish_non_exhaustive()
    }
}

/// Why a task produced no output: it was cancelled, or it panicked.
///
/// # Examples
///
#[doc = example!()]
/// let rt = vedart::Runtime::new().unwrap();
/// let err = rt
///     .block_on(rt.spawn(async { panic!("boom") }))
///     .unwrap_err();
/// assert!(err.is_panic());
/// assert_eq!(err.panic_message(), Some("boom"));
/// assert_eq!(err.to_string(), "task panicked: boom");
/// ```
pub struct JoinError {
    repr: Repr,
}

enum Repr {
    Cancelled,
    Panic(SyncPayload),
}

/// A panic payload made `Sync` by never handing out `&` access to it.
struct SyncPayload(Box<dyn Any + Send + 'static>);

// SAFETY: the payload leaves only by value (`try_into_panic`). The one shared
// access is `message`, which calls `Any::type_id` (it returns a constant and
// reads no data) and then reads the payload only as `&str` or `String`, both
// `Sync`. So no non-`Sync` data is ever read through a shared reference.
unsafe impl Sync for SyncPayload {}

impl SyncPayload {
    fn message(&self) -> Option<&str> {
        if let Some(text) = self.0.downcast_ref::<&'static str>() {
            Some(text)
        } else {
            self.0.downcast_ref::<String>().map(String::as_str)
        }
    }
}

impl JoinError {
    pub(crate) fn cancelled() -> JoinError {
        JoinError {
            repr: Repr::Cancelled,
        }
    }

    pub(crate) fn panic(payload: Box<dyn Any + Send + 'static>) -> JoinError {
        JoinError {
            repr: Repr::Panic(SyncPayload(payload)),
        }
    }

    /// Whether the task was cancelled: aborted, or dropped because its runtime
    /// shut down (or was spawned after it did).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The panic message, when the task panicked with a string (as `panic!`
    /// with a message does).
    pub fn panic_message(&self) -> Option<&str> {
        match &self.repr {
            Repr::Panic(payload) => payload.message(),
            Repr::Cancelled => None,
        }
    }

    /// The panic payload, or `self` back if the task did not panic. Pass the
    /// payload to [`std::panic::resume_unwind`] to re-raise the panic.
    ///
    /// # Errors
    ///
    /// Returns `Err(self)` when the task was cancelled rather than panicking.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panic(payload) => Ok(payload.0),
            Repr::Cancelled => Err(self),
        }
    }

    /// The panic payload.
    ///
    /// # Panics
    ///
    /// Panics if the task was cancelled rather than panicking; check
    /// [`JoinError::is_panic`] first, or use [`JoinError::try_into_panic`].
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match self.try_into_panic() {
            Ok(payload) => payload,
            Err(err) => panic!("JoinError::into_panic called on a task that did not panic: {err}"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => f.write_str("task was cancelled"),
            Repr::Panic(payload) => match payload.message() {
                Some(message) => write!(f, "task panicked: {message}"),
                None => f.write_str("task panicked"),
            },
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => f.write_str("JoinError::Cancelled"),
            Repr::Panic(payload) => match payload.message() {
                Some(message) => write!(f, "JoinError::Panic({message:?})"),
                None => f.write_str("JoinError::Panic(..)"),
            },
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    fn from(err: JoinError) -> std::io::Error {
        let kind = if err.is_cancelled() {
            std::io::ErrorKind::Interrupted
        } else {
            std::io::ErrorKind::Other
        };
        std::io::Error::new(kind, err)
    }
}
