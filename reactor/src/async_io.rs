//! [`Async<T>`]: any non-blocking file-descriptor-backed I/O object, driven by the reactor.
//!
//! # Implementation
//!
//! `Async::new` switches the fd to non-blocking mode and registers it with the
//! current reactor for both directions, edge-triggered. Operations try the
//! syscall first; on `WouldBlock` they clear the direction's readiness (unless
//! an event raced in, see `registration`) and wait for the next event. The fd is
//! deregistered before the inner object is dropped.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};
use mio::Interest;
use mio::unix::SourceFd;

use crate::driver::Reactor;
use crate::registration::{Direction, IoState, WaiterId};
use crate::sync::Arc;

/// A non-blocking I/O object registered with a [`Reactor`].
///
/// # Examples
///
#[doc = example!()]
/// use std::os::unix::net::UnixStream;
/// use futures::{AsyncReadExt, AsyncWriteExt};
/// use vedart_reactor::Async;
///
/// futures::executor::block_on(async {
///     let (a, b) = UnixStream::pair()?;
///     let (mut a, mut b) = (Async::new(a)?, Async::new(b)?);
///     a.write_all(b"ping").await?;
///     let mut buf = [0; 4];
///     b.read_exact(&mut buf).await?;
///     assert_eq!(&buf, b"ping");
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub struct Async<T: AsRawFd> {
    /// `None` only while `into_inner` moves the object out.
    io: Option<T>,
    reactor: Reactor,
    key: usize,
    state: Arc<IoState>,
}

impl<T: AsRawFd + fmt::Debug> fmt::Debug for Async<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async").field("io", &self.io).finish()
    }
}

impl<T: AsRawFd> Async<T> {
    /// Registers `io` with [`Reactor::current`], switching its fd to non-blocking mode.
    ///
    /// # Errors
    ///
    /// Fails if the fd cannot be made non-blocking or registered (the reactor
    /// shut down, or the fd is not pollable, as regular files are not).
    pub fn new(io: T) -> io::Result<Async<T>> {
        Async::with_reactor(io, &Reactor::current())
    }

    /// Registers `io` with a specific reactor.
    ///
    /// # Errors
    ///
    /// As [`Async::new`].
    pub fn with_reactor(io: T, reactor: &Reactor) -> io::Result<Async<T>> {
        let fd = io.as_raw_fd();
        set_nonblocking(fd)?;
        let (key, state) =
            reactor.register(&mut SourceFd(&fd), Interest::READABLE | Interest::WRITABLE)?;
        Ok(Async {
            io: Some(io),
            reactor: reactor.clone(),
            key,
            state,
        })
    }

    /// The inner I/O object.
    pub fn get_ref(&self) -> &T {
        self.io.as_ref().expect("io is present until into_inner")
    }

    /// The inner I/O object, mutably. Reading or writing it directly bypasses
    /// readiness tracking; prefer [`Async::read_with_mut`] and friends.
    pub fn get_mut(&mut self) -> &mut T {
        self.io.as_mut().expect("io is present until into_inner")
    }

    /// Deregisters and returns the inner object (still in non-blocking mode).
    ///
    /// # Errors
    ///
    /// Infallible today; kept fallible so a future reactor may report deregistration errors.
    pub fn into_inner(mut self) -> io::Result<T> {
        self.deregister();
        Ok(self.io.take().expect("io is present until into_inner"))
    }

    fn deregister(&mut self) {
        if let Some(io) = &self.io {
            let fd = io.as_raw_fd();
            self.reactor.deregister(&mut SourceFd(&fd), self.key);
        }
    }

    /// Polls until the object may be readable.
    ///
    /// Like the other `poll_*` methods this keeps one waker per direction: only
    /// the task that polled last is woken. Use [`Async::readable`] when several
    /// tasks wait on the same object.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state.poll_ready(Direction::Read, cx).map_ok(drop)
    }

    /// Polls until the object may be writable. See [`Async::poll_readable`].
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state.poll_ready(Direction::Write, cx).map_ok(drop)
    }

    /// Waits until the object may be readable.
    ///
    /// Readiness can be spurious (a fresh object starts out ready, and another
    /// task may consume the data first), so the next read may still return
    /// `WouldBlock`; [`Async::read_with`] handles that loop for you. Any number
    /// of tasks may wait at once; each is woken by the next event.
    pub async fn readable(&self) -> io::Result<()> {
        Ready {
            io: self,
            dir: Direction::Read,
            id: WaiterId::default(),
        }
        .await
    }

    /// Waits until the object may be writable. See [`Async::readable`].
    pub async fn writable(&self) -> io::Result<()> {
        Ready {
            io: self,
            dir: Direction::Write,
            id: WaiterId::default(),
        }
        .await
    }

    /// Runs a non-blocking operation in direction `dir` until it stops returning `WouldBlock`.
    ///
    /// One waker per direction, as [`Async::poll_readable`]; the `async` methods
    /// ([`Async::read_with`], ...) let several tasks share the object.
    pub fn poll_io<R>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let state = &self.state;
        retry_io(
            state,
            dir,
            || state.poll_ready(dir, cx),
            || op(self.get_ref()),
        )
    }

    /// Like [`Async::poll_io`], with mutable access to the object.
    pub fn poll_io_mut<R>(
        &mut self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let Async { io, state, .. } = self;
        let io = io.as_mut().expect("io is present until into_inner");
        retry_io(state, dir, || state.poll_ready(dir, cx), || op(io))
    }

    /// Like [`Async::poll_io`], for a future that owns `waiter`: every future
    /// waiting on the direction is woken by the next event, not just the last one.
    /// The caller must remove `waiter` when it is dropped; [`WaiterGuard`] does.
    pub(crate) fn poll_io_waiter<R>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        waiter: &mut WaiterId,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let state = &self.state;
        retry_io(
            state,
            dir,
            || state.poll_ready_waiter(dir, cx, waiter),
            || op(self.get_ref()),
        )
    }

    /// Runs `op` until it does not return `WouldBlock`, as a future that any
    /// number of tasks may await concurrently on a shared `&self`.
    async fn shared_io<R>(
        &self,
        dir: Direction,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut waiter = WaiterGuard::new(self, dir);
        futures::future::poll_fn(|cx| waiter.poll_io(cx, &mut op)).await
    }

    /// Repeats a read-side operation until it does not return `WouldBlock`.
    ///
    /// Several tasks may call this on the same object at once (for example to
    /// `accept` or `recv_from` from a shared socket); each is woken by the next
    /// read event and retries its operation.
    ///
    /// # Errors
    ///
    /// The operation's own error, or an error if the reactor shut down.
    pub async fn read_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.shared_io(Direction::Read, op).await
    }

    /// Repeats a read-side operation with mutable access until it does not return `WouldBlock`.
    pub async fn read_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        futures::future::poll_fn(|cx| self.poll_io_mut(Direction::Read, cx, &mut op)).await
    }

    /// Repeats a write-side operation until it does not return `WouldBlock`.
    /// Several tasks may call this at once, as with [`Async::read_with`].
    ///
    /// # Errors
    ///
    /// The operation's own error, or an error if the reactor shut down.
    pub async fn write_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.shared_io(Direction::Write, op).await
    }

    /// Repeats a write-side operation with mutable access until it does not return `WouldBlock`.
    pub async fn write_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        futures::future::poll_fn(|cx| self.poll_io_mut(Direction::Write, cx, &mut op)).await
    }
}

/// The loop of the `poll_io*` methods: waits for readiness of `dir` with
/// `poll_ready`, runs `op`, and on `WouldBlock` clears the readiness it saw
/// (unless an event raced in, see `registration`) and tries again.
fn retry_io<R>(
    state: &IoState,
    dir: Direction,
    poll_ready: impl FnMut() -> Poll<io::Result<u64>>,
    op: impl FnMut() -> io::Result<R>,
) -> Poll<io::Result<R>> {
    retry_io_drained(state, dir, poll_ready, op, |_| false)
}

/// [`retry_io`], also clearing the readiness it saw after a success for which
/// `drained` says the object has nothing more to give: the next operation then
/// waits for the next event instead of paying a system call that would only
/// say `WouldBlock` (events are edge-triggered: what arrives later raises a
/// new event, and an event that raced in keeps the readiness, see
/// `registration`).
fn retry_io_drained<R>(
    state: &IoState,
    dir: Direction,
    mut poll_ready: impl FnMut() -> Poll<io::Result<u64>>,
    mut op: impl FnMut() -> io::Result<R>,
    drained: impl Fn(&R) -> bool,
) -> Poll<io::Result<R>> {
    loop {
        let tick = match poll_ready() {
            Poll::Ready(Ok(tick)) => tick,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => return Poll::Pending,
        };
        match op() {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                state.clear_ready(dir, tick);
            }
            Ok(done) if drained(&done) => {
                state.clear_ready_drained(dir, tick);
                return Poll::Ready(Ok(done));
            }
            result => return Poll::Ready(result),
        }
    }
}

/// For a stream read of `requested` bytes: a read that returned fewer (and not
/// end-of-file) emptied the receive queue, as tokio also assumes.
fn short_read(requested: usize) -> impl Fn(&usize) -> bool {
    move |&read| read > 0 && read < requested
}

/// The future of [`Async::readable`] / [`Async::writable`].
struct Ready<'a, T: AsRawFd> {
    io: &'a Async<T>,
    dir: Direction,
    id: WaiterId,
}

impl<T: AsRawFd> Future for Ready<'_, T> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.io
            .state
            .poll_ready_waiter(this.dir, cx, &mut this.id)
            .map_ok(drop)
    }
}

impl<T: AsRawFd> Drop for Ready<'_, T> {
    fn drop(&mut self) {
        // Only our own entry: other tasks may be waiting on the same direction.
        self.io.state.remove_waiter(self.dir, &self.id);
    }
}

/// Owns a [`WaiterId`] for the duration of one shared operation (or of a
/// stream of them, such as a listener's `Incoming`) and removes its entry when
/// dropped, finished or not.
pub(crate) struct WaiterGuard<'a, T: AsRawFd> {
    io: &'a Async<T>,
    dir: Direction,
    id: WaiterId,
}

impl<'a, T: AsRawFd> WaiterGuard<'a, T> {
    /// A fresh waiter on direction `dir` of `io`.
    pub(crate) fn new(io: &'a Async<T>, dir: Direction) -> WaiterGuard<'a, T> {
        WaiterGuard {
            io,
            dir,
            id: WaiterId::default(),
        }
    }

    /// [`Async::poll_io_waiter`] with this guard's direction and waiter.
    pub(crate) fn poll_io<R>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.io.poll_io_waiter(self.dir, cx, &mut self.id, op)
    }
}

impl<T: AsRawFd> Drop for WaiterGuard<'_, T> {
    fn drop(&mut self) {
        self.io.state.remove_waiter(self.dir, &self.id);
    }
}

// `Async` never pins its inner object: it only hands out `&T` / `&mut T`.
impl<T: AsRawFd> Unpin for Async<T> {}

impl<T: AsRawFd> Drop for Async<T> {
    fn drop(&mut self) {
        self.deregister();
    }
}

impl<T: AsRawFd> AsRawFd for Async<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.get_ref().as_raw_fd()
    }
}

impl<T: AsRawFd + AsFd> AsFd for Async<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl<T: AsRawFd + Read> AsyncRead for Async<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io_mut(Direction::Read, cx, |io| io.read(buf))
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io_mut(Direction::Read, cx, |io| io.read_vectored(bufs))
    }
}

impl<T: AsRawFd + Write> AsyncWrite for Async<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io_mut(Direction::Write, cx, |io| io.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io_mut(Direction::Write, cx, |io| io.write_vectored(bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .poll_io_mut(Direction::Write, cx, |io| io.flush())
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl<T: AsRawFd + Read> Async<T> {
    /// [`AsyncRead::poll_read`] for a stream socket (TCP, Unix): a short read
    /// means the receive queue is empty, so the next read waits for an event
    /// instead of first trying a system call that would say `WouldBlock` (half
    /// the reads of a request-response server). Not for every fd: a terminal
    /// returns one line per read with more buffered, and Linux has changed
    /// when a pipe raises edge-triggered events (5.5, 5.14), so pipes keep the
    /// plain path. The end-of-file behind a short read raises no event of its
    /// own: `IoState::clear_ready_drained` keeps the readiness once the peer
    /// closed.
    pub(crate) fn poll_read_stream(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let Async { io, state, .. } = self;
        let io = io.as_mut().expect("io is present until into_inner");
        let requested = buf.len();
        retry_io_drained(
            state,
            Direction::Read,
            || state.poll_ready(Direction::Read, cx),
            || io.read(buf),
            short_read(requested),
        )
    }
}

// Reads and writes through `&T`, for objects shared by the two owned halves of
// a split stream: the read half and the write half may use the socket at the
// same time, so neither can have `&mut T`.
impl<T: AsRawFd> Async<T> {
    /// [`Async::poll_read_stream`] into memory that need not be initialized:
    /// `recv` writes the bytes straight into it (what hyper's read buffer
    /// offers; `AsyncRead` would have it zeroed first). Returns how many bytes
    /// were written at the front of `buf`.
    pub(crate) fn poll_recv_uninit(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        let state = &self.state;
        let requested = buf.len();
        let fd = self.as_raw_fd();
        retry_io_drained(
            state,
            Direction::Read,
            || state.poll_ready(Direction::Read, cx),
            || {
                // SAFETY: `recv` writes at most `requested` bytes into the
                // buffer, which `buf` owns for this call; it never reads it.
                let read = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), requested, 0) };
                if read < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(read as usize)
                }
            },
            short_read(requested),
        )
    }
}

impl<T: AsRawFd> Async<T>
where
    for<'a> &'a T: Read,
{
    /// [`AsyncRead::poll_read`] on a shared stream socket (the read half of a
    /// split one); a short read clears the readiness, as in
    /// [`Async::poll_read_stream`].
    pub(crate) fn poll_read_shared(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let state = &self.state;
        let requested = buf.len();
        retry_io_drained(
            state,
            Direction::Read,
            || state.poll_ready(Direction::Read, cx),
            || self.get_ref().read(buf),
            short_read(requested),
        )
    }

    /// [`AsyncRead::poll_read_vectored`] on a shared object.
    pub(crate) fn poll_read_vectored_shared(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(Direction::Read, cx, |mut io| io.read_vectored(bufs))
    }
}

impl<T: AsRawFd> Async<T>
where
    for<'a> &'a T: Write,
{
    /// [`AsyncWrite::poll_write`] on a shared object.
    pub(crate) fn poll_write_shared(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(Direction::Write, cx, |mut io| io.write(buf))
    }

    /// [`AsyncWrite::poll_write_vectored`] on a shared object.
    pub(crate) fn poll_write_vectored_shared(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(Direction::Write, cx, |mut io| io.write_vectored(bufs))
    }
}

// ---------------------------------------------------------------------------
// Trait impls shared by the wrapper types of `net`, `unix` and `pipe`. Each
// wrapper keeps its `Async` (or, for a split half, an `Arc` of it) in a field
// named `inner`.
// ---------------------------------------------------------------------------

/// `AsRawFd` and `AsFd` for wrappers, delegating to `inner`.
macro_rules! impl_fd {
    ($($ty:ty),+ $(,)?) => {$(
        impl ::std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> ::std::os::fd::RawFd {
                ::std::os::fd::AsRawFd::as_raw_fd(&self.inner)
            }
        }

        impl ::std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> ::std::os::fd::BorrowedFd<'_> {
                ::std::os::fd::AsFd::as_fd(&self.inner)
            }
        }
    )+};
}
pub(crate) use impl_fd;

/// `Debug` for a wrapper: the type's name, the listed address methods
/// (`None` where they fail) and the fd.
macro_rules! impl_debug {
    ($ty:ident $(: $($addr:ident),+)?) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $($(.field(stringify!($addr), &self.$addr().ok()))+)?
                    .field("fd", &{
                        // A method call, so that it reaches through an `Arc`.
                        use ::std::os::fd::AsRawFd as _;
                        self.inner.as_raw_fd()
                    })
                    .finish()
            }
        }
    };
}
pub(crate) use impl_debug;

/// `AsyncRead` for a wrapper whose `inner` is an owned `Async<T>`, `T: Read`.
macro_rules! impl_async_read {
    // A socket byte stream: a short read clears the readiness
    // (`Async::poll_read_stream`).
    ($ty:ty, socket) => {
        $crate::async_io::impl_async_read!($ty, |inner, cx, buf| inner.poll_read_stream(cx, buf));
    };
    ($ty:ty) => {
        $crate::async_io::impl_async_read!($ty, |inner, cx, buf| {
            ::futures::io::AsyncRead::poll_read(::std::pin::Pin::new(inner), cx, buf)
        });
    };
    ($ty:ty, |$inner:ident, $cx:ident, $buf:ident| $read:expr) => {
        impl ::futures::io::AsyncRead for $ty {
            fn poll_read(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut [u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                let ($inner, $cx, $buf) = (&mut self.inner, cx, buf);
                $read
            }

            fn poll_read_vectored(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &mut [::std::io::IoSliceMut<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::futures::io::AsyncRead::poll_read_vectored(
                    ::std::pin::Pin::new(&mut self.inner),
                    cx,
                    bufs,
                )
            }
        }
    };
}
pub(crate) use impl_async_read;

/// `poll_write`, `poll_write_vectored` and `poll_flush` of `AsyncWrite`, inside
/// the impl for a wrapper whose `inner` is an owned `Async<T>`, `T: Write`. The
/// impl adds its own `poll_close`.
macro_rules! async_write_methods {
    () => {
        fn poll_write(
            mut self: ::std::pin::Pin<&mut Self>,
            cx: &mut ::std::task::Context<'_>,
            buf: &[u8],
        ) -> ::std::task::Poll<::std::io::Result<usize>> {
            ::futures::io::AsyncWrite::poll_write(::std::pin::Pin::new(&mut self.inner), cx, buf)
        }

        fn poll_write_vectored(
            mut self: ::std::pin::Pin<&mut Self>,
            cx: &mut ::std::task::Context<'_>,
            bufs: &[::std::io::IoSlice<'_>],
        ) -> ::std::task::Poll<::std::io::Result<usize>> {
            ::futures::io::AsyncWrite::poll_write_vectored(
                ::std::pin::Pin::new(&mut self.inner),
                cx,
                bufs,
            )
        }

        fn poll_flush(
            self: ::std::pin::Pin<&mut Self>,
            _cx: &mut ::std::task::Context<'_>,
        ) -> ::std::task::Poll<::std::io::Result<()>> {
            // Sockets and pipes keep no user-space buffer: a completed write
            // is already with the kernel.
            ::std::task::Poll::Ready(Ok(()))
        }
    };
}
pub(crate) use async_write_methods;

/// For the owned halves of a split stream of `S` (fields `inner: Arc<Async<S>>`,
/// where `S` has `shutdown`, and the write half's `shutdown_on_drop: bool`):
/// `fn split_halves(Async<S>)`, which makes the pair; `Debug`; `AsyncRead` and
/// `AsyncWrite`; and the write half's `Drop`, which shuts down the write
/// direction unless `poll_close` already did.
macro_rules! impl_split_halves {
    ($stream:ty => $read:ident, $write:ident) => {
        /// The two halves of one stream, sharing its `Async`.
        fn split_halves(inner: $crate::async_io::Async<$stream>) -> ($read, $write) {
            let shared = $crate::sync::Arc::new(inner);
            (
                $read {
                    inner: shared.clone(),
                },
                $write {
                    inner: shared,
                    shutdown_on_drop: true,
                },
            )
        }

        $crate::async_io::impl_debug!($read);
        $crate::async_io::impl_debug!($write);

        impl ::futures::io::AsyncRead for $read {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut [u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.inner.poll_read_shared(cx, buf)
            }

            fn poll_read_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &mut [::std::io::IoSliceMut<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.inner.poll_read_vectored_shared(cx, bufs)
            }
        }

        impl ::futures::io::AsyncWrite for $write {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.inner.poll_write_shared(cx, buf)
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.inner.poll_write_vectored_shared(cx, bufs)
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                _cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::task::Poll::Ready(Ok(()))
            }

            fn poll_close(
                mut self: ::std::pin::Pin<&mut Self>,
                _cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                self.shutdown_on_drop = false;
                ::std::task::Poll::Ready(self.inner.get_ref().shutdown(::std::net::Shutdown::Write))
            }
        }

        impl Drop for $write {
            fn drop(&mut self) {
                if self.shutdown_on_drop {
                    // The peer may already be gone; there is nobody to report that to.
                    let _ = self.inner.get_ref().shutdown(::std::net::Shutdown::Write);
                }
            }
        }
    };
}
pub(crate) use impl_split_halves;

/// `Debug` and `Stream` for a listener's `Incoming` stream (fields `listener`
/// and `waiter`, a read [`WaiterGuard`] on the listener), whose items are
/// accepted sockets wrapped by `$wrap` into `$stream`s.
macro_rules! impl_incoming {
    ($incoming:ident => $stream:ty, $wrap:expr) => {
        impl ::std::fmt::Debug for $incoming<'_> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($incoming))
                    .field("listener", self.listener)
                    .finish()
            }
        }

        impl ::futures::Stream for $incoming<'_> {
            type Item = ::std::io::Result<$stream>;

            fn poll_next(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<Option<Self::Item>> {
                self.get_mut()
                    .waiter
                    .poll_io(cx, |listener| listener.accept())
                    .map(|accepted| Some(accepted.and_then(|(stream, _)| ($wrap)(stream))))
            }
        }
    };
}
pub(crate) use impl_incoming;

/// Puts an fd into non-blocking mode.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFL/F_SETFL only reads and writes the fd's status
    // flags; an invalid fd yields EBADF, which we report.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
