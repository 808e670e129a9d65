//! Child processes on the reactor: a pool of warm workers that speak a framed
//! protocol ([`ProcessPool`]), and async child processes with piped stdio
//! ([`Command`]).
//!
//! # Implementation
//!
//! - No thread per child. Pipes and pidfds are registered with a reactor and
//!   driven by futures: one driver task per pool child (`conn`), run by the
//!   pool's [`Spawner`] (the runtime's, or the `veda-process` background thread
//!   with its own reactor, see `background`).
//! - Threads this module starts, each once per process and on first use:
//!   `veda-process` (runs the pool's driver tasks when no spawner is given, and
//!   reaps dropped [`Child`]ren) and `veda-process-spawn` (forks every pool child,
//!   so that `PR_SET_PDEATHSIG` is tied to a thread that never exits; see `sys`).
//! - Children are started with fork+exec (`std::process::Command` with a
//!   `pre_exec` hook that only makes async-signal-safe calls).
//! - Exits are awaited through pidfds (`pidfd_open`, Linux 5.3+) with a
//!   `waitpid` polling fallback (`exit`); signalling and reaping share one lock
//!   so a signal can never reach a recycled pid (`sys`).
//!
//! The wire format and the rules a worker must follow are in [`protocol`]
//! (`README.md` beside this file); the codec is [`frame`]. A Rust worker does
//! not implement them by hand: [`serve`] / [`serve_async`] run a handler per
//! request, and [`typed`] with [`ProcessPool::call_typed`] carry serde values
//! (postcard) both ways.
//!
//! # Examples
//!
//! ```no_run
//! use vedart_executors::process::{Command, ProcessPool};
//!
//! # futures::executor::block_on(async {
//! // A one-off child process.
//! let output = Command::new("echo").arg("hello").output().await?;
//! assert_eq!(output.stdout, b"hello\n");
//!
//! // A pool of workers.
//! let pool = ProcessPool::builder("my-worker").workers(2).build()?;
//! let answer = pool.call(b"ping".to_vec()).await?;
//! # let _ = answer;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # });
//! ```

mod background;
mod builder;
mod call;
mod command;
mod conn;
mod driver;
mod error;
mod exit;
pub mod frame;
mod pool;
mod serve;
#[doc = include_str!("README.md")]
pub mod protocol {}
mod stats;
mod stderr;
mod sys;
mod typed;
mod writer;

pub use builder::ProcessPoolBuilder;
pub use call::{Broadcast, Call, CancelHandle, Context, WorkerReply};
pub use command::{Child, Command, Output};
pub use error::{ProcessError, ProcessErrorKind};
pub use pool::{
    BoxFuture, DEFAULT_GRACE_PERIOD, DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE,
    MAX_FRAME_SIZE_ENV, ProcessPool, Shutdown, Spawner,
};
pub use serve::{AsyncHandler, Failure, FailureKind, Handler, Reply, Request, serve, serve_async};
pub use stats::{PoolStats, WorkerState, WorkerStats};
pub use typed::{
    Typed, TypedAsync, TypedCall, TypedError, TypedErrorKind, TypedReply, typed, typed_async,
};
