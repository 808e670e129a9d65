//! A channel for one value, sent once: the usual way for a task to hand a
//! result back. Built on [`futures::channel::oneshot`], with tokio's names.
//!
//! The [`Receiver`] is a future (`Unpin`: await it by `&mut` inside a
//! `select!` loop; cancellation safe). Dropping the [`Sender`] without sending
//! makes it resolve to [`RecvError`]; dropping the receiver makes
//! [`Sender::send`] give the value back and wakes [`Sender::closed`].
//!
//! # Examples
//!
#![doc = crate::example!()]
//! use vedart::sync::oneshot;
//!
//! let rt = vedart::Runtime::new()?;
//! rt.block_on(async {
//!     let (tx, rx) = oneshot::channel();
//!     let sender = vedart::spawn(async move {
//!         let _ = tx.send(6 * 7);
//!     });
//!     assert_eq!(rx.await, Ok(42));
//!     sender.await.unwrap();
//!
//!     let (tx, rx) = oneshot::channel::<u32>();
//!     drop(tx);
//!     assert_eq!(rx.await, Err(oneshot::RecvError));
//! });
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::oneshot as inner;

/// Creates a channel for one value.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = inner::channel();
    (Sender(tx), Receiver(rx))
}

/// Sends the one value.
#[derive(Debug)]
pub struct Sender<T>(inner::Sender<T>);

/// Receives the one value: await it.
#[derive(Debug)]
pub struct Receiver<T>(inner::Receiver<T>);

impl<T> Sender<T> {
    /// Sends `value`, or gives it back if the receiver is gone.
    pub fn send(self, value: T) -> Result<(), T> {
        self.0.send(value)
    }

    /// Whether the receiver is gone (dropped or closed).
    pub fn is_closed(&self) -> bool {
        self.0.is_canceled()
    }

    /// Waits until the receiver is gone, for a producer to stop work nobody
    /// will read. Cancellation safe.
    pub async fn closed(&mut self) {
        self.0.cancellation().await
    }

    /// Polls for the receiver being gone (see [`closed`](Sender::closed)).
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_canceled(cx)
    }
}

impl<T> Receiver<T> {
    /// Takes the value if it was sent. `Empty` while the sender may still send.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        match self.0.try_recv() {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(TryRecvError::Empty),
            Err(inner::Canceled) => Err(TryRecvError::Closed),
        }
    }

    /// Refuses the value: the sender's `send` fails from now on (a value sent
    /// before still arrives).
    pub fn close(&mut self) {
        self.0.close();
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map_err(|inner::Canceled| RecvError)
    }
}

/// The sender was dropped without sending.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the oneshot sender was dropped without sending")
    }
}

impl std::error::Error for RecvError {}

/// Why [`Receiver::try_recv`] returned no value.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum TryRecvError {
    /// Not sent yet; the sender may still send.
    Empty,
    /// The sender was dropped without sending (or the value was taken).
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("no value sent yet"),
            TryRecvError::Closed => f.write_str("the oneshot sender was dropped without sending"),
        }
    }
}

impl std::error::Error for TryRecvError {}
