//! Synchronization for async tasks: channels, locks, a semaphore, a barrier
//! and a notifier, all runtime-agnostic (they work in any executor, and from
//! plain threads where a method says so).
//!
//! | primitive | what it is | built on |
//! |---|---|---|
//! | [`mpsc`] | multi-producer single-consumer queue, bounded or unbounded | bounded: [`async-channel`](https://docs.rs/async-channel); unbounded: [`concurrent-queue`](https://docs.rs/concurrent-queue) + `futures`' `AtomicWaker` |
//! | [`oneshot`] | one value, once | [`futures::channel::oneshot`] |
//! | [`broadcast`] | every receiver sees every value; slow ones lag | [`async-broadcast`](https://docs.rs/async-broadcast) |
//! | [`watch`] | the latest value, receivers told when it changes | [`Notify`] (this crate) |
//! | [`Mutex`], [`RwLock`] | async locks, guards held across `.await` | [`async-lock`](https://docs.rs/async-lock) |
//! | [`Semaphore`] | `n` permits, borrowed or owned (`Arc`) | `async-lock` |
//! | [`Barrier`] | `n` tasks meet | `async-lock` |
//! | [`Notify`] | wake one task or all waiting tasks | this crate |
//!
//! The names follow tokio's `tokio::sync`, so code moves over by changing the
//! path. Where the underlying crate names things differently the tokio name
//! is an alias: [`OwnedMutexGuard`] is `async-lock`'s `MutexGuardArc`,
//! [`OwnedSemaphorePermit`] is `SemaphoreGuardArc`, and `lock_owned` /
//! `acquire_owned` are spelled `lock_arc` / `acquire_arc`.
//!
//! # Cancellation safety
//!
//! A future is *cancellation safe* when dropping it before it completes (in a
//! `select!` branch that lost, or under a timeout) loses nothing: awaiting a
//! fresh one later behaves as if the first had never existed.
//!
//! | method | cancellation safe? |
//! |---|---|
//! | `mpsc::Receiver::recv`, `UnboundedReceiver::recv` | yes: a message is only taken by the poll that returns it |
//! | `mpsc::Sender::send` | no: a dropped send drops its message, and its place in the queue of waiting senders |
//! | `oneshot::Receiver` (awaited by `&mut`) | yes |
//! | `oneshot::Sender::closed` | yes |
//! | `broadcast::Receiver::recv` | yes: the receiver's position moves only when a value is returned |
//! | `watch::Receiver::changed` | yes: the seen version moves only when it returns |
//! | `watch::Sender::closed` | yes |
//! | `Mutex::lock`, `RwLock::read` / `write`, `Semaphore::acquire` | yes, but a dropped waiter loses its place in the queue (`async-lock` hands a wake it received on to the next waiter) |
//! | `Barrier::wait` | no: a dropped wait has already counted this task as arrived |
//! | `Notify::notified` | yes: a permit handed to a dropped `Notified` passes on to the next waiter, or is stored |
//!
//! # Examples
//!
#![doc = crate::example!()]
//! use std::sync::Arc;
//! use vedart::sync::{Mutex, mpsc};
//!
//! let rt = vedart::Runtime::new()?;
//! rt.block_on(async {
//!     let (tx, mut rx) = mpsc::channel(16);
//!     let total = Arc::new(Mutex::new(0u64));
//!     for producer in 0..4u64 {
//!         let tx = tx.clone();
//!         drop(vedart::spawn(async move { // detached: runs on its own
//!             for i in 0..100 {
//!                 tx.send(producer * 100 + i).await.unwrap();
//!             }
//!         }));
//!     }
//!     drop(tx); // the channel closes when the last producer is done
//!     while let Some(value) = rx.recv().await {
//!         *total.lock().await += value;
//!     }
//!     assert_eq!(*total.lock().await, (0..400).sum::<u64>());
//! });
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

pub mod broadcast;
pub mod mpsc;
mod notify;
pub mod oneshot;
mod unbounded;
pub mod watch;

pub use async_lock::{
    Barrier, BarrierWaitResult, Mutex, MutexGuard, MutexGuardArc, RwLock, RwLockReadGuard,
    RwLockReadGuardArc, RwLockUpgradableReadGuard, RwLockWriteGuard, RwLockWriteGuardArc,
    Semaphore, SemaphoreGuard, SemaphoreGuardArc,
};
pub use notify::{Notified, Notify};

/// tokio's name for a guard that owns an `Arc` of its [`Mutex`] (from `lock_arc`).
pub type OwnedMutexGuard<T> = MutexGuardArc<T>;
/// tokio's name for a read guard that owns an `Arc` of its [`RwLock`] (from `read_arc`).
pub type OwnedRwLockReadGuard<T> = RwLockReadGuardArc<T>;
/// tokio's name for a write guard that owns an `Arc` of its [`RwLock`] (from `write_arc`).
pub type OwnedRwLockWriteGuard<T> = RwLockWriteGuardArc<T>;
/// tokio's name for a borrowed [`Semaphore`] permit (from `acquire`); dropping it
/// gives the permit back, `forget` keeps it taken.
pub type SemaphorePermit<'a> = SemaphoreGuard<'a>;
/// tokio's name for a permit that owns an `Arc` of its [`Semaphore`] (from
/// `acquire_arc`), so it can move into a spawned task.
pub type OwnedSemaphorePermit = SemaphoreGuardArc;
