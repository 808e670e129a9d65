//! A multi-producer, multi-consumer channel where every receiver sees every
//! value sent after it subscribed. Built on
//! [`async-broadcast`](https://docs.rs/async-broadcast), with tokio's
//! semantics: the channel keeps the last `capacity` values and `send` never
//! waits; a receiver that falls more than `capacity` values behind loses the
//! oldest ones and is told how many ([`RecvError::Lagged`]), then carries on
//! from the oldest value still kept.
//!
//! The channel closes when every [`Sender`] is dropped; receivers drain what
//! is left, then get [`RecvError::Closed`]. `Receiver::recv` is cancellation
//! safe.
//!
//! # Examples
//!
#![doc = crate::example!()]
//! use vedart::sync::broadcast::{self, RecvError};
//!
//! let rt = vedart::Runtime::new()?;
//! rt.block_on(async {
//!     let (tx, mut fast) = broadcast::channel(2);
//!     let mut slow = tx.subscribe();
//!     for i in 0..3 {
//!         tx.send(i).unwrap();
//!         assert_eq!(fast.recv().await, Ok(i));
//!     }
//!     // `slow` read nothing: value 0 was pushed out of the 2-slot buffer.
//!     assert_eq!(slow.recv().await, Err(RecvError::Lagged(1)));
//!     assert_eq!(slow.recv().await, Ok(1));
//!     drop(tx);
//!     assert_eq!(slow.recv().await, Ok(2));
//!     assert_eq!(slow.recv().await, Err(RecvError::Closed));
//! });
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

/// Creates a channel keeping the last `capacity` values.
///
/// # Panics
///
/// Panics if `capacity` is zero.
pub fn channel<T: Clone>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "vedart::sync::broadcast::channel: capacity must be at least 1"
    );
    let (mut tx, rx) = async_broadcast::broadcast(capacity);
    tx.set_overflow(true); // a channel-wide setting
    // The sender keeps an inactive receiver so that the channel stays open
    // (and `subscribe` works) while no receiver is subscribed, as in tokio.
    let keep_open = rx.clone().deactivate();
    (Sender { tx, keep_open }, Receiver(rx))
}

/// Sends values to every subscribed receiver. Clone it for more senders.
pub struct Sender<T> {
    tx: async_broadcast::Sender<T>,
    keep_open: async_broadcast::InactiveReceiver<T>,
}

/// Receives every value sent after it subscribed. Cloning it gives a receiver
/// at the same position.
pub struct Receiver<T>(async_broadcast::Receiver<T>);

impl<T: Clone> Sender<T> {
    /// Sends `value` to every receiver, and returns how many there are. Never
    /// waits: a full buffer drops its oldest value (lagging receivers that had
    /// not read it). Fails, giving the value back, when no receiver exists.
    pub fn send(&self, value: T) -> Result<usize, SendError<T>> {
        match self.tx.try_broadcast(value) {
            Ok(_) => Ok(self.tx.receiver_count()),
            Err(error) => Err(SendError(error.into_inner())),
        }
    }

    /// A new receiver that sees the values sent from now on.
    pub fn subscribe(&self) -> Receiver<T> {
        Receiver(self.keep_open.activate_cloned())
    }

    /// How many receivers are subscribed.
    pub fn receiver_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// How many values are buffered (not yet read by every receiver).
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            tx: self.tx.clone(),
            keep_open: self.keep_open.clone(),
        }
    }
}

impl<T: Clone> Receiver<T> {
    /// Receives the next value. `Lagged(n)` when `n` values were lost to
    /// overflow (the next call returns the oldest value kept); `Closed` once
    /// every sender is gone and the buffer is drained. Cancellation safe.
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        self.0.recv_direct().await.map_err(|error| match error {
            async_broadcast::RecvError::Overflowed(n) => RecvError::Lagged(n),
            async_broadcast::RecvError::Closed => RecvError::Closed,
        })
    }

    /// Receives a value if one is ready now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.0.try_recv().map_err(|error| match error {
            async_broadcast::TryRecvError::Overflowed(n) => TryRecvError::Lagged(n),
            async_broadcast::TryRecvError::Empty => TryRecvError::Empty,
            async_broadcast::TryRecvError::Closed => TryRecvError::Closed,
        })
    }

    /// How many values this receiver has not read yet.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this receiver has read everything sent.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver(self.0.clone())
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("receivers", &self.tx.receiver_count())
            .finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("len", &self.0.len())
            .finish()
    }
}

/// No receiver exists; the value that could not be sent is inside.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("broadcast channel has no receivers")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Why [`Receiver::recv`] returned no value.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum RecvError {
    /// Every sender is gone and the buffer is drained.
    Closed,
    /// The receiver fell behind and this many values were dropped for it.
    Lagged(u64),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed => f.write_str("broadcast channel closed"),
            RecvError::Lagged(n) => write!(f, "broadcast receiver lagged by {n} values"),
        }
    }
}

impl std::error::Error for RecvError {}

/// Why [`Receiver::try_recv`] returned no value.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryRecvError {
    /// Nothing to read now.
    Empty,
    /// Every sender is gone and the buffer is drained.
    Closed,
    /// The receiver fell behind and this many values were dropped for it.
    Lagged(u64),
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("broadcast channel empty"),
            TryRecvError::Closed => f.write_str("broadcast channel closed"),
            TryRecvError::Lagged(n) => write!(f, "broadcast receiver lagged by {n} values"),
        }
    }
}

impl std::error::Error for TryRecvError {}
