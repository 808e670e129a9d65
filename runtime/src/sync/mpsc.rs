//! A multi-producer, single-consumer queue: [`channel`] (bounded: senders
//! wait while it is full) and [`unbounded_channel`].
//!
//! The bounded channel is [`async-channel`](https://docs.rs/async-channel)
//! (smol-rs's lock-free queue from `concurrent-queue` plus `event-listener`
//! wake-ups); the unbounded one is `concurrent-queue` with a single
//! `AtomicWaker` for the consumer, which measured faster than tokio's where
//! async-channel's was slower (README, channel table). Both have tokio's names
//! and semantics: senders clone, the receiver does not;
//! the channel closes when every sender is dropped or the receiver calls
//! [`Receiver::close`], and the receiver still drains what was sent before.
//!
//! `recv` is cancellation safe; `send` is not (its message is dropped with
//! it). See [the module docs](super#cancellation-safety).
//!
//! # Examples
//!
#![doc = crate::example!()]
//! use vedart::sync::mpsc;
//!
//! let rt = vedart::Runtime::new()?;
//! rt.block_on(async {
//!     let (tx, mut rx) = mpsc::channel(1);
//!     let producer = vedart::spawn(async move {
//!         for i in 0..3 {
//!             tx.send(i).await.unwrap(); // waits for room: capacity 1
//!         }
//!     });
//!     assert_eq!(rx.recv().await, Some(0));
//!     assert_eq!(rx.recv().await, Some(1));
//!     assert_eq!(rx.recv().await, Some(2));
//!     assert_eq!(rx.recv().await, None); // every sender dropped
//!     producer.await.unwrap();
//! });
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

pub use super::unbounded::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Creates a bounded channel holding at most `capacity` messages.
///
/// # Panics
///
/// Panics if `capacity` is zero (as tokio's does): a rendezvous channel has
/// no buffer to bound.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "vedart::sync::mpsc::channel: capacity must be at least 1"
    );
    let (tx, rx) = async_channel::bounded(capacity);
    (Sender(tx), Receiver(Box::pin(rx)))
}

/// The sending half of a bounded channel; clone it for more producers.
pub struct Sender<T>(async_channel::Sender<T>);

/// The receiving half of a bounded channel.
// Pinned on the heap: async-channel's receiver is `!Unpin` (it holds its
// `Stream` listener inline) and `poll_recv` takes `&mut self`.
pub struct Receiver<T>(Pin<Box<async_channel::Receiver<T>>>);

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full. Fails, giving the
    /// value back, once the channel is closed.
    ///
    /// Not cancellation safe: dropping the future drops `value`.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.0.send(value).await.map_err(|e| SendError(e.0))
    }

    /// Sends `value` if there is room now.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.0.try_send(value).map_err(|e| match e {
            async_channel::TrySendError::Full(value) => TrySendError::Full(value),
            async_channel::TrySendError::Closed(value) => TrySendError::Closed(value),
        })
    }

    /// Sends `value` from outside async code, blocking the thread while the
    /// channel is full. Never call it on a runtime worker.
    pub fn blocking_send(&self, value: T) -> Result<(), SendError<T>> {
        self.0.send_blocking(value).map_err(|e| SendError(e.0))
    }

    /// How many more messages fit now.
    pub fn capacity(&self) -> usize {
        self.max_capacity() - self.0.len()
    }

    /// The bound the channel was created with.
    pub fn max_capacity(&self) -> usize {
        self.0.capacity().unwrap_or(usize::MAX)
    }
}

macro_rules! shared_sender_methods {
    ($sender:ident) => {
        impl<T> $sender<T> {
            /// Whether the channel is closed (receiver dropped or closed).
            pub fn is_closed(&self) -> bool {
                self.0.is_closed()
            }

            /// Waits until the channel is closed. Cancellation safe.
            pub async fn closed(&self) {
                self.0.closed().await
            }

            /// Whether `self` and `other` send to the same channel.
            pub fn same_channel(&self, other: &$sender<T>) -> bool {
                self.0.same_channel(&other.0)
            }
        }

        impl<T> Clone for $sender<T> {
            fn clone(&self) -> Self {
                $sender(self.0.clone())
            }
        }

        impl<T> fmt::Debug for $sender<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($sender))
                    .field("len", &self.0.len())
                    .field("closed", &self.0.is_closed())
                    .finish()
            }
        }
    };
}
shared_sender_methods!(Sender);

macro_rules! receiver_methods {
    ($receiver:ident) => {
        impl<T> $receiver<T> {
            /// Receives the next message, or `None` once the channel is
            /// closed and drained. Cancellation safe.
            pub async fn recv(&mut self) -> Option<T> {
                self.0.recv().await.ok()
            }

            /// Receives a message if one is queued now.
            pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
                self.0.try_recv().map_err(|e| match e {
                    async_channel::TryRecvError::Empty => TryRecvError::Empty,
                    async_channel::TryRecvError::Closed => TryRecvError::Disconnected,
                })
            }

            /// Receives from outside async code, blocking the thread until a
            /// message or the close. Never call it on a runtime worker.
            pub fn blocking_recv(&mut self) -> Option<T> {
                self.0.recv_blocking().ok()
            }

            /// Polls for the next message (`Ready(None)` once closed and
            /// drained), for hand-written futures and streams.
            pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
                self.0.as_mut().poll_next(cx)
            }

            /// Closes the channel: senders fail from now on, and the messages
            /// already queued can still be received.
            pub fn close(&mut self) {
                self.0.close();
            }

            /// Whether the channel is closed.
            pub fn is_closed(&self) -> bool {
                self.0.is_closed()
            }

            /// How many messages are queued.
            pub fn len(&self) -> usize {
                self.0.len()
            }

            /// Whether no message is queued.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl<T> Stream for $receiver<T> {
            type Item = T;

            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
                self.get_mut().poll_recv(cx)
            }
        }

        impl<T> fmt::Debug for $receiver<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($receiver))
                    .field("len", &self.0.len())
                    .field("closed", &self.0.is_closed())
                    .finish()
            }
        }
    };
}
receiver_methods!(Receiver);

/// The channel is closed; the value that could not be sent is inside.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

/// Why [`Sender::try_send`] failed; the value is inside.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The channel is full now.
    Full(T),
    /// The channel is closed.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(value) | TrySendError::Closed(value) => value,
        }
    }
}

/// Why [`Receiver::try_recv`] returned no message.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryRecvError {
    /// Nothing is queued now; the channel is open.
    Empty,
    /// The channel is closed and drained.
    Disconnected,
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a closed channel")
    }
}

impl<T> std::error::Error for SendError<T> {}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("no available capacity"),
            TrySendError::Closed(_) => f.write_str("sending on a closed channel"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Disconnected => f.write_str("receiving on a closed channel"),
        }
    }
}

impl std::error::Error for TryRecvError {}
