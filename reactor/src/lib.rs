//! VedaRT's reactor: a mio event loop with readiness futures, timers, and async
//! sockets and pipes.
//!
//! # Implementation
//!
//! - [`Reactor`] (in `driver`) owns one `mio::Poll`, a token-indexed table of
//!   registered sources and an ordered timer queue. It starts no thread: the
//!   VedaRT scheduler lends it one idle worker at a time. Outside a runtime,
//!   [`Reactor::current`] falls back to a global reactor driven by one
//!   `veda-reactor` thread.
//! - [`Async<T>`] turns any fd-backed object into futures; the socket and pipe
//!   types are thin wrappers over it: [`net`] (TCP, UDP), [`unix`] (Unix
//!   domain sockets) and [`pipe`](mod@pipe) (pipe ends for child processes).
//! - [`fork`]: process-wide values made again, and locks kept free, across
//!   `fork()` (the global reactor is one).
//! - Timers ([`sleep`], [`timeout`], [`interval`]) register on first poll and
//!   cancel on drop.
//!
//! The readiness protocol (why no wake-up is lost when an event races a
//! syscall) and the timer-interrupt protocol are written up, with the argument
//! for their correctness, in the crate's
//! [`README.md`](https://github.com/vedart/vedart/blob/main/reactor/README.md)
//! next to this file.
#![deny(unsafe_op_in_unsafe_fn)]

/// Opens a doc example that builds a runtime, a reactor or a pool: run as a
/// doctest, except under the `loom` feature, where the crates' sync facades are
/// loom's and work only inside a loom model, so the example is compiled but not
/// run (`cargo test --features loom` at the workspace root stays green). The
/// one definition for the workspace: `vedart-executors` and `vedart` open their
/// examples with it too (their `loom` features turn on this crate's).
#[doc(hidden)]
#[cfg(not(feature = "loom"))]
#[macro_export]
macro_rules! __doc_example {
    () => {
        "```"
    };
}
#[doc(hidden)]
#[cfg(feature = "loom")]
#[macro_export]
macro_rules! __doc_example {
    () => {
        "```no_run"
    };
}
macro_rules! example {
    () => {
        $crate::__doc_example!()
    };
}

// Pipes come from `pipe2`, and the readiness and wake-up protocols (README.md)
// are written and tested against epoll and eventfd; kqueue and other systems
// are neither handled nor tested.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "vedart-reactor supports Linux only (x86_64 and aarch64): it uses pipe2, and its \
     readiness protocol is built and tested on epoll and eventfd only"
);

mod async_io;
mod driver;
pub mod fork;
pub mod net;
pub mod pipe;
mod registration;
mod sync;
mod timer;
pub mod unix;

pub use async_io::Async;
pub use driver::{DriverGuard, EnterGuard, Reactor};
pub use net::{TcpListener, TcpStream, UdpSocket};
pub use pipe::{PipeReader, PipeWriter, pipe};
pub use registration::Direction;
pub use timer::{
    Elapsed, Interval, MissedTickBehavior, Sleep, Timeout, interval, sleep, sleep_until, timeout,
};
pub use unix::{UnixDatagram, UnixListener, UnixStream};
