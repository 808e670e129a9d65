//! Completion of stream work: the state a CUDA callback completes, and the
//! future that waits for it. The protocol is described in `README.md` beside
//! this file.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures::task::AtomicWaker;

use super::device::Device;
use super::error::GpuError;
use super::ffi;
use crate::sync::unmodelled::Arc;
use crate::sync::unmodelled::atomic::{AtomicBool, AtomicU32, Ordering};

/// Set once by the stream callback; read by the future.
pub(super) struct Completion {
    /// Set (release) by the callback after `status`; read with acquire.
    done: AtomicBool,
    /// The `CUresult` the driver passed to the callback; 0 is success.
    status: AtomicU32,
    /// The task waiting for this point of the stream.
    waker: AtomicWaker,
}

impl Completion {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            done: AtomicBool::new(false),
            status: AtomicU32::new(0),
            waker: AtomicWaker::new(),
        })
    }

    /// Called once, from the stream callback on a driver thread: records the
    /// status and wakes the waiting task. Makes no CUDA call.
    pub(super) fn complete(&self, status: u32) {
        self.status.store(status, Ordering::Relaxed);
        self.done.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Whether the stream has passed this point.
    pub(super) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn status(&self) -> Option<u32> {
        self.is_done().then(|| self.status.load(Ordering::Relaxed))
    }

    /// The status if complete; otherwise registers `waker` and checks again, so
    /// a completion racing the registration is never missed.
    fn poll_status(&self, waker: &Waker) -> Option<u32> {
        if let Some(status) = self.status() {
            return Some(status);
        }
        self.waker.register(waker);
        self.status()
    }
}

type Finish<T> = Box<dyn FnOnce() -> T + Send>;

/// A future that resolves when a stream reaches the point where it was queued.
///
/// Returned by the operations of [`Stream`](super::Stream). It completes
/// without blocking any thread: a host callback queued on the stream wakes the
/// task (see the module's `README.md`). It resolves to the operation's result,
/// or to a [`GpuError`] with the driver's code if the stream failed.
///
/// Dropping it does not cancel the GPU work, which cannot be cancelled: what the
/// work still uses (pinned buffers) is kept alive by the device until the stream
/// has passed it, then released.
#[must_use = "the result arrives only through the future; dropping it does not cancel the GPU work"]
pub struct GpuFuture<T: 'static> {
    completion: Arc<Completion>,
    /// Builds the output once the stream passed the point; owns what the GPU
    /// work uses until then. `None` once the future has resolved.
    finish: Option<Finish<T>>,
    /// Takes `finish` over if the future is dropped before completion.
    device: Device,
}

impl<T: 'static> GpuFuture<T> {
    pub(super) fn new(
        completion: Arc<Completion>,
        finish: impl FnOnce() -> T + Send + 'static,
        device: Device,
    ) -> Self {
        crate::telemetry::gpu().spawned();
        Self {
            completion,
            finish: Some(Box::new(finish)),
            device,
        }
    }

    /// Whether the stream has passed this point (the future would resolve now).
    pub fn is_complete(&self) -> bool {
        self.completion.is_done()
    }

    /// Transforms the output once the stream has passed the point.
    pub fn map<U: 'static>(mut self, f: impl FnOnce(T) -> U + Send + 'static) -> GpuFuture<U> {
        let completion = Arc::clone(&self.completion);
        let device = self.device.clone();
        let finish = self.finish.take();
        GpuFuture {
            completion,
            finish: finish.map(|finish| -> Finish<U> { Box::new(move || f(finish())) }),
            device,
        }
    }
}

impl<T: 'static> Future for GpuFuture<T> {
    type Output = Result<T, GpuError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(status) = self.completion.poll_status(cx.waker()) else {
            return Poll::Pending;
        };
        let Some(finish) = self.finish.take() else {
            return Poll::Ready(Err(GpuError::invalid_argument(
                "a GpuFuture was polled after it resolved",
            )));
        };
        crate::telemetry::gpu().finished(status == 0);
        if status == 0 {
            Poll::Ready(Ok(finish()))
        } else {
            // The stream is past the point (it failed): the resources can go.
            drop(finish);
            Poll::Ready(Err(GpuError::stream_failure(
                status,
                ffi::error_name(status),
            )))
        }
    }
}

impl<T: 'static> Drop for GpuFuture<T> {
    fn drop(&mut self) {
        if let Some(finish) = self.finish.take() {
            // Dropped before it resolved (`map` hands its work on and resolves
            // nothing: its `finish` is already taken).
            crate::telemetry::gpu().cancelled(1);
            if !self.completion.is_done() {
                self.device
                    .keep_until_done(Arc::clone(&self.completion), Box::new(finish));
            }
        }
    }
}

impl<T: 'static> fmt::Debug for GpuFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GpuFuture")
            .field("device", &self.device.ordinal())
            .field("complete", &self.is_complete())
            .field("resolved", &self.finish.is_none())
            .finish()
    }
}
