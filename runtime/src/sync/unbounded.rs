//! The unbounded mpsc channel: a lock-free `concurrent-queue` and one
//! `AtomicWaker` for the single consumer.
//!
//! async-channel (behind the bounded channel) wakes receivers through
//! `event-listener`, which allocates a listener and takes a lock whenever the
//! consumer finds the queue empty; with one fast producer that happens on
//! most messages (see the README's channel table). A single consumer needs
//! only one waker slot, so this channel uses `futures`' `AtomicWaker` with
//! the pattern its documentation prescribes: the consumer pops, and only if
//! the queue is empty registers its waker and pops again; a producer pushes,
//! then wakes. Either the second pop sees the message or the wake sees the
//! registered waker. No lock-free code of its own: the queue and the waker
//! slot are the well-tested crates'.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use concurrent_queue::{ConcurrentQueue, PopError, PushError};
use futures::Stream;
use futures::task::AtomicWaker;

use super::Notify;
use super::mpsc::{SendError, TryRecvError};
use crate::sync_facade::unmodelled::Arc;
use crate::sync_facade::unmodelled::atomic::{AtomicUsize, Ordering::AcqRel};

struct Chan<T> {
    queue: ConcurrentQueue<T>,
    receiver: AtomicWaker,
    senders: AtomicUsize,
    /// `notify_waiters` when the channel closes, for `UnboundedSender::closed`.
    closed: Notify,
}

impl<T> Chan<T> {
    fn close(&self) {
        if self.queue.close() {
            self.receiver.wake();
            self.closed.notify_waiters();
        }
    }
}

/// Creates a channel with no bound: `send` never waits (memory is the limit).
pub fn unbounded_channel<T>() -> (UnboundedSender<T>, UnboundedReceiver<T>) {
    let chan = Arc::new(Chan {
        queue: ConcurrentQueue::unbounded(),
        receiver: AtomicWaker::new(),
        senders: AtomicUsize::new(1),
        closed: Notify::new(),
    });
    (
        UnboundedSender { chan: chan.clone() },
        UnboundedReceiver { chan },
    )
}

/// The sending half of an unbounded channel; clone it for more producers.
pub struct UnboundedSender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving half of an unbounded channel.
pub struct UnboundedReceiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> UnboundedSender<T> {
    /// Sends `value` (never waits). Fails, giving the value back, once the
    /// channel is closed.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        match self.chan.queue.push(value) {
            Ok(()) => {
                self.chan.receiver.wake();
                Ok(())
            }
            Err(PushError::Closed(value) | PushError::Full(value)) => Err(SendError(value)),
        }
    }

    /// Whether the channel is closed (receiver dropped or closed).
    pub fn is_closed(&self) -> bool {
        self.chan.queue.is_closed()
    }

    /// Waits until the channel is closed. Cancellation safe.
    pub async fn closed(&self) {
        loop {
            // Created before the check, so a close in between still wakes it.
            let closed = self.chan.closed.notified();
            if self.is_closed() {
                return;
            }
            closed.await;
        }
    }

    /// Whether `self` and `other` send to the same channel.
    pub fn same_channel(&self, other: &UnboundedSender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> Self {
        self.chan.senders.fetch_add(1, AcqRel);
        UnboundedSender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for UnboundedSender<T> {
    fn drop(&mut self) {
        if self.chan.senders.fetch_sub(1, AcqRel) == 1 {
            // The receiver drains what is queued, then sees the close.
            self.chan.close();
        }
    }
}

impl<T> UnboundedReceiver<T> {
    /// Receives the next message, or `None` once the channel is closed and
    /// drained. Cancellation safe.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives a message if one is queued now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.chan.queue.pop().map_err(|error| match error {
            PopError::Empty => TryRecvError::Empty,
            PopError::Closed => TryRecvError::Disconnected,
        })
    }

    /// Receives from outside async code, blocking the thread until a message
    /// or the close. Never call it on a runtime worker.
    pub fn blocking_recv(&mut self) -> Option<T> {
        futures::executor::block_on(self.recv())
    }

    /// Polls for the next message (`Ready(None)` once closed and drained).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self.chan.queue.pop() {
            Ok(value) => return Poll::Ready(Some(value)),
            Err(PopError::Closed) => return Poll::Ready(None),
            Err(PopError::Empty) => {}
        }
        self.chan.receiver.register(cx.waker());
        // Again after registering: a push before the registration did not
        // see our waker, so its message must be found now.
        match self.chan.queue.pop() {
            Ok(value) => Poll::Ready(Some(value)),
            Err(PopError::Closed) => Poll::Ready(None),
            Err(PopError::Empty) => Poll::Pending,
        }
    }

    /// Closes the channel: senders fail from now on, and the messages already
    /// queued can still be received.
    pub fn close(&mut self) {
        self.chan.close();
    }

    /// Whether the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.chan.queue.is_closed()
    }

    /// How many messages are queued.
    pub fn len(&self) -> usize {
        self.chan.queue.len()
    }

    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        self.chan.queue.is_empty()
    }
}

impl<T> Drop for UnboundedReceiver<T> {
    fn drop(&mut self) {
        self.chan.close();
    }
}

impl<T> Stream for UnboundedReceiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<T> fmt::Debug for UnboundedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnboundedSender")
            .field("len", &self.chan.queue.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> fmt::Debug for UnboundedReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnboundedReceiver")
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}
