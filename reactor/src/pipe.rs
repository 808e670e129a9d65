//! Async pipe ends, for talking to child processes without a thread per pipe.
//!
//! # Implementation
//!
//! [`PipeReader`] and [`PipeWriter`] hold a pipe end as a [`File`] inside
//! [`Async`]: the fd is switched to non-blocking mode and registered with the
//! reactor, and reads and writes wait for readiness only on `WouldBlock`.
//!
//! - [`pipe`] creates both ends with `pipe2(O_CLOEXEC)`, so a child spawned
//!   meanwhile on another thread does not inherit them by accident.
//! - The `from_child_*` constructors take the parent's end of a
//!   [`std::process::Command`] pipe (`Stdio::piped()`). Only the parent's end
//!   becomes non-blocking: the two ends of a pipe are separate open files.
//! - [`PipeReader::into_owned_fd`] / [`PipeWriter::into_owned_fd`] deregister
//!   the end and switch it back to blocking mode, ready to hand to a child as
//!   `Stdio::from(fd)` or to blocking code.
//!
//! # End of stream
//!
//! - When every write end is closed, the reader's reads return `0` (EOF); a
//!   reader waiting at that moment is woken by the hang-up event.
//! - When every read end is closed, the writer's writes fail with
//!   [`io::ErrorKind::BrokenPipe`]; a writer waiting on a full pipe is woken
//!   by the error event. (`EPIPE` also raises `SIGPIPE`, which kills the process
//!   unless it is ignored; Rust programs and the Python interpreter ignore it
//!   by default, other hosts must do so themselves.)
//! - A pipe has no half-close: [`AsyncWrite::poll_close`] only flushes, and the
//!   reader sees EOF when the [`PipeWriter`] is dropped.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::process::{ChildStderr, ChildStdin, ChildStdout};
use std::task::{Context, Poll};

use futures::io::AsyncWrite;

use crate::async_io::{Async, async_write_methods, impl_async_read, impl_debug, impl_fd};

/// Creates a pipe and registers both ends with
/// [`Reactor::current`](crate::Reactor::current). Both fds are close-on-exec.
///
/// # Errors
///
/// The OS error of `pipe2` (out of file descriptors), or a registration error.
///
/// # Examples
///
#[doc = example!()]
/// use futures::{AsyncReadExt, AsyncWriteExt};
///
/// futures::executor::block_on(async {
///     let (mut reader, mut writer) = vedart_reactor::pipe()?;
///     writer.write_all(b"frame").await?;
///     drop(writer); // EOF for the reader
///     let mut got = Vec::new();
///     reader.read_to_end(&mut got).await?;
///     assert_eq!(got, b"frame");
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub fn pipe() -> io::Result<(PipeReader, PipeWriter)> {
    let mut fds: [libc::c_int; 2] = [-1; 2];
    // SAFETY: `fds` is a valid, writable array of two ints, as pipe2 requires.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else;
    // each is wrapped exactly once and closed when its `OwnedFd` drops.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((
        PipeReader::from_owned_fd(read)?,
        PipeWriter::from_owned_fd(write)?,
    ))
}

/// Switches an fd back to blocking mode before it leaves the reactor.
fn set_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL only reads the fd's status flags; a bad fd gives EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        // SAFETY: F_SETFL only changes the fd's status flags, as above.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Deregisters `inner` and returns its fd in blocking mode.
fn into_blocking_fd(inner: Async<File>) -> io::Result<OwnedFd> {
    let fd = OwnedFd::from(inner.into_inner()?);
    set_blocking(fd.as_raw_fd())?;
    Ok(fd)
}

/// The read end of a pipe. Reads return `0` once every write end is closed.
pub struct PipeReader {
    inner: Async<File>,
}

impl PipeReader {
    /// Takes ownership of a pipe's read end (or any pollable readable fd, such
    /// as a FIFO or a socket) and registers it with the current reactor,
    /// switching it to non-blocking mode.
    ///
    /// # Errors
    ///
    /// Fails if the fd cannot be made non-blocking or registered; a regular
    /// file is refused by epoll with `PermissionDenied`.
    pub fn from_owned_fd(fd: OwnedFd) -> io::Result<PipeReader> {
        Ok(PipeReader {
            inner: Async::new(File::from(fd))?,
        })
    }

    /// The parent's end of a child's piped stdout.
    ///
    /// # Errors
    ///
    /// As [`PipeReader::from_owned_fd`].
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// use std::process::{Command, Stdio};
    /// use futures::AsyncReadExt;
    /// use vedart_reactor::PipeReader;
    ///
    /// let mut child = Command::new("echo").arg("hi").stdout(Stdio::piped()).spawn()?;
    /// let mut out = PipeReader::from_child_stdout(child.stdout.take().unwrap())?;
    /// let text = futures::executor::block_on(async {
    ///     let mut text = String::new();
    ///     out.read_to_string(&mut text).await.map(|_| text)
    /// })?;
    /// assert_eq!(text, "hi\n");
    /// child.wait()?;
    /// # std::io::Result::Ok(())
    /// ```
    pub fn from_child_stdout(stdout: ChildStdout) -> io::Result<PipeReader> {
        PipeReader::from_owned_fd(stdout.into())
    }

    /// The parent's end of a child's piped stderr.
    ///
    /// # Errors
    ///
    /// As [`PipeReader::from_owned_fd`].
    pub fn from_child_stderr(stderr: ChildStderr) -> io::Result<PipeReader> {
        PipeReader::from_owned_fd(stderr.into())
    }

    /// Deregisters the end and returns its fd, back in blocking mode (for
    /// example to pass to a child as `Stdio::from(fd)`).
    ///
    /// # Errors
    ///
    /// Fails if the fd's flags cannot be restored.
    pub fn into_owned_fd(self) -> io::Result<OwnedFd> {
        into_blocking_fd(self.inner)
    }
}

impl_debug!(PipeReader);
impl_fd!(PipeReader);

impl TryFrom<ChildStdout> for PipeReader {
    type Error = io::Error;

    fn try_from(stdout: ChildStdout) -> io::Result<PipeReader> {
        PipeReader::from_child_stdout(stdout)
    }
}

impl TryFrom<ChildStderr> for PipeReader {
    type Error = io::Error;

    fn try_from(stderr: ChildStderr) -> io::Result<PipeReader> {
        PipeReader::from_child_stderr(stderr)
    }
}

impl_async_read!(PipeReader);

/// The write end of a pipe. Writes fail with `BrokenPipe` once every read end
/// is closed; the reader sees EOF when this end is dropped.
pub struct PipeWriter {
    inner: Async<File>,
}

impl PipeWriter {
    /// Takes ownership of a pipe's write end (or any pollable writable fd) and
    /// registers it with the current reactor, switching it to non-blocking mode.
    ///
    /// # Errors
    ///
    /// As [`PipeReader::from_owned_fd`].
    pub fn from_owned_fd(fd: OwnedFd) -> io::Result<PipeWriter> {
        Ok(PipeWriter {
            inner: Async::new(File::from(fd))?,
        })
    }

    /// The parent's end of a child's piped stdin. Drop it to give the child EOF.
    ///
    /// # Errors
    ///
    /// As [`PipeReader::from_owned_fd`].
    pub fn from_child_stdin(stdin: ChildStdin) -> io::Result<PipeWriter> {
        PipeWriter::from_owned_fd(stdin.into())
    }

    /// Deregisters the end and returns its fd, back in blocking mode.
    ///
    /// # Errors
    ///
    /// Fails if the fd's flags cannot be restored.
    pub fn into_owned_fd(self) -> io::Result<OwnedFd> {
        into_blocking_fd(self.inner)
    }
}

impl_debug!(PipeWriter);
impl_fd!(PipeWriter);

impl TryFrom<ChildStdin> for PipeWriter {
    type Error = io::Error;

    fn try_from(stdin: ChildStdin) -> io::Result<PipeWriter> {
        PipeWriter::from_child_stdin(stdin)
    }
}

impl AsyncWrite for PipeWriter {
    async_write_methods!();

    /// Only flushes: a pipe cannot be half-closed. Drop the writer to send EOF.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
