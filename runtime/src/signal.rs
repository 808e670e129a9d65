//! Unix signals as futures and streams: [`ctrl_c`] and [`signal`].
//!
//! Each listener owns a pipe: its read end is registered with the reactor
//! like any socket, and an action registered with
//! [`signal-hook-registry`](https://docs.rs/signal-hook-registry) (the process's
//! one signal handler, shared with other crates that use it) writes a byte to
//! the write end on every delivery. A write from a signal handler is
//! async-signal-safe, the reactor wakes the waiting task, and no thread is
//! started.
//!
//! Semantics, as tokio's:
//!
//! - Listening starts when [`signal`] / [`ctrl_c`] is called; deliveries before
//!   that are not seen. Every listener sees every delivery after its start.
//! - Deliveries that arrive before the listener looks again coalesce: `recv`
//!   reports "at least one since last time".
//! - Once a signal is listened for, its default action (for `SIGINT` and
//!   `SIGTERM`: terminating the process) no longer happens, even after the
//!   listeners are dropped: the program decides what a signal means.
//!
//! `recv` is cancellation safe: a delivery is consumed only by the poll that
//! reports it.
//!
//! # Examples
//!
#![doc = crate::example!()]
//! use vedart::signal::{SignalKind, signal};
//!
//! let rt = vedart::Runtime::new()?;
//! rt.block_on(async {
//!     let mut hangups = signal(SignalKind::hangup())?;
//!     // SAFETY: raise only sends a signal to this process, which now handles it.
//!     unsafe { libc::raise(libc::SIGHUP) };
//!     assert_eq!(hangups.recv().await, Some(()));
//!     std::io::Result::Ok(())
//! })?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use futures::io::AsyncRead;
use signal_hook_registry::SigId;
use vedart_reactor::PipeReader;

/// A kind of Unix signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignalKind(libc::c_int);

impl SignalKind {
    /// Any signal by number (`libc::SIGRTMIN() + 1`, ...). [`signal`] refuses
    /// the ones no handler may take (`SIGKILL`, `SIGSTOP`, `SIGILL`, `SIGFPE`,
    /// `SIGSEGV`) and numbers that are no signal.
    pub const fn from_raw(signum: libc::c_int) -> SignalKind {
        SignalKind(signum)
    }

    /// The signal number.
    pub const fn as_raw(self) -> libc::c_int {
        self.0
    }

    /// `SIGINT`: Ctrl+C in a terminal.
    pub const fn interrupt() -> SignalKind {
        SignalKind(libc::SIGINT)
    }

    /// `SIGTERM`: the polite request to stop (`kill`, service managers).
    pub const fn terminate() -> SignalKind {
        SignalKind(libc::SIGTERM)
    }

    /// `SIGHUP`: the terminal went away; daemons reload their configuration.
    pub const fn hangup() -> SignalKind {
        SignalKind(libc::SIGHUP)
    }

    /// `SIGQUIT`: Ctrl+\ in a terminal.
    pub const fn quit() -> SignalKind {
        SignalKind(libc::SIGQUIT)
    }

    /// `SIGUSR1`.
    pub const fn user_defined1() -> SignalKind {
        SignalKind(libc::SIGUSR1)
    }

    /// `SIGUSR2`.
    pub const fn user_defined2() -> SignalKind {
        SignalKind(libc::SIGUSR2)
    }

    /// `SIGCHLD`: a child process changed state.
    pub const fn child() -> SignalKind {
        SignalKind(libc::SIGCHLD)
    }

    /// `SIGWINCH`: the terminal was resized.
    pub const fn window_change() -> SignalKind {
        SignalKind(libc::SIGWINCH)
    }

    /// `SIGALRM`.
    pub const fn alarm() -> SignalKind {
        SignalKind(libc::SIGALRM)
    }

    /// `SIGPIPE`: a write to a pipe nobody reads.
    pub const fn pipe() -> SignalKind {
        SignalKind(libc::SIGPIPE)
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signal {}", self.0)
    }
}

/// A stream of deliveries of one signal: `recv().await` returns `Some(())`
/// after each one (coalesced while nobody looked). Dropping it stops
/// listening.
pub struct Signal {
    kind: SignalKind,
    reader: PipeReader,
    registration: SigId,
}

/// Starts listening for `kind` and returns the stream of its deliveries.
///
/// # Errors
///
/// `InvalidInput` naming the signal for one no handler may take
/// (`SIGKILL`, `SIGSTOP`, `SIGILL`, `SIGFPE`, `SIGSEGV`) or a number that is
/// no signal; otherwise the OS error of creating the pipe, installing the
/// handler or registering with the reactor.
pub fn signal(kind: SignalKind) -> io::Result<Signal> {
    let signum = kind.as_raw();
    if signal_hook_registry::FORBIDDEN.contains(&signum) || !(1..=max_signal()).contains(&signum) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("vedart::signal: cannot listen for signal {signum}: no handler may take it"),
        ));
    }
    let (read, write) = nonblocking_pipe()?;
    let wake = move || {
        // A full pipe (EAGAIN) already holds a wake-up: deliveries coalesce.
        // SAFETY: write(2) is async-signal-safe; `write` is an open fd owned
        // by this closure (closed only when the registry drops the closure,
        // which it does after every running handler has left it), and the
        // buffer is one valid byte. signal-hook-registry preserves errno.
        unsafe { libc::write(write.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    };
    // SAFETY: `wake` only calls write(2), async-signal-safe, does not
    // allocate, lock or panic; and `signum` is not a forbidden signal.
    let registration = unsafe { signal_hook_registry::register(signum, wake) }?;
    match PipeReader::from_owned_fd(read) {
        Ok(reader) => Ok(Signal {
            kind,
            reader,
            registration,
        }),
        Err(error) => {
            signal_hook_registry::unregister(registration);
            Err(error)
        }
    }
}

fn max_signal() -> libc::c_int {
    libc::SIGRTMAX()
}

/// A pipe whose write end never blocks (a signal handler must not) and
/// whose ends close on exec.
fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [libc::c_int; 2] = [-1; 2];
    // SAFETY: `fds` is a valid, writable array of two ints, as pipe2 requires.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else;
    // each is wrapped exactly once.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Signal {
    /// The signal this stream listens for.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }

    /// Waits for the next delivery (or several, coalesced). `None` only if
    /// the reactor failed the pipe, which does not happen in practice.
    /// Cancellation safe.
    pub async fn recv(&mut self) -> Option<()> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next delivery (see [`recv`](Signal::recv)).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
        // One read drains up to 128 pending deliveries: they coalesce.
        let mut buffer = [0u8; 128];
        match Pin::new(&mut self.reader).poll_read(cx, &mut buffer) {
            Poll::Ready(Ok(n)) if n > 0 => Poll::Ready(Some(())),
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Stream for Signal {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        signal_hook_registry::unregister(self.registration);
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal").field("kind", &self.kind).finish()
    }
}

/// Completes at the next Ctrl+C (`SIGINT`) after this call: the usual way to
/// shut a service down gracefully.
///
/// Listening starts at the call, not at the first poll, so a program can
/// announce it is ready and then await. After the first call, Ctrl+C no longer
/// terminates the process by itself (see [the module docs](self)).
///
/// # Examples
///
#[doc = crate::example!()]
/// # let rt = vedart::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let shutdown = vedart::signal::ctrl_c();
/// # // SAFETY: raise only sends a signal to this process, which now handles it.
/// # unsafe { libc::raise(libc::SIGINT) };
/// shutdown.await.expect("listening for Ctrl+C");
/// println!("shutting down");
/// # });
/// ```
pub fn ctrl_c() -> CtrlC {
    CtrlC {
        state: match signal(SignalKind::interrupt()) {
            Ok(signal) => CtrlCState::Listening(signal),
            Err(error) => CtrlCState::Failed(Some(error)),
        },
    }
}

/// The future of [`ctrl_c`]: `Ok(())` at the next Ctrl+C, or the error of
/// starting to listen.
#[must_use = "ctrl_c() does nothing unless awaited"]
#[derive(Debug)]
pub struct CtrlC {
    state: CtrlCState,
}

#[derive(Debug)]
enum CtrlCState {
    Listening(Signal),
    /// Starting to listen failed; the error until it is returned.
    Failed(Option<io::Error>),
}

impl Future for CtrlC {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.state {
            CtrlCState::Listening(signal) => signal.poll_recv(cx).map(|delivery| {
                delivery.ok_or_else(|| {
                    io::Error::other("vedart::signal::ctrl_c: the reactor failed the signal pipe")
                })
            }),
            CtrlCState::Failed(error) => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                io::Error::other("vedart::signal::ctrl_c polled after it completed")
            }))),
        }
    }
}
