//! [hyper](https://hyper.rs) 1.x on VedaRT: the three adapters hyper's
//! connections need from a runtime, so that hyper's servers and clients, HTTP/1.1
//! and HTTP/2, run on vedart's scheduler, reactor and timers (cargo feature
//! `hyper`).
//!
//! - [`HyperExecutor`]: `hyper::rt::Executor`, spawning the background tasks of
//!   HTTP/2 connections (and of `hyper-util`'s auto server) with
//!   [`vedart::spawn`](crate::spawn).
//! - [`HyperTimer`]: `hyper::rt::Timer`, hyper's timeouts and keep-alive pings
//!   as [`vedart::time::Sleep`](crate::time::Sleep) on the current reactor's
//!   clock (virtual time in deterministic mode).
//! - [`HyperIo`]: `hyper::rt::Read` + `hyper::rt::Write` over a
//!   [`vedart::net::TcpStream`](crate::net::TcpStream), a Unix stream, or any
//!   `futures` `AsyncRead + AsyncWrite`.
//!
//! They play the parts of `hyper-util`'s `TokioExecutor`, `TokioTimer` and
//! `TokioIo`.
//!
//! # Examples
//!
//! A server on one connection and a client talking to it, over HTTP/1.1:
//!
#![doc = crate::example!()]
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use hyper::{Request, Response, body::Incoming, service::service_fn};
//! use vedart::hyper::{HyperIo, HyperTimer};
//! use vedart::net::{TcpListener, TcpStream};
//!
//! async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
//!     Ok(Response::new(Full::new(Bytes::from_static(b"hello, world"))))
//! }
//!
//! let rt = vedart::Runtime::new()?;
//! rt.block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let addr = listener.local_addr()?;
//!     vedart::spawn(async move {
//!         let (stream, _) = listener.accept().await?;
//!         hyper::server::conn::http1::Builder::new()
//!             .timer(HyperTimer::new())
//!             .serve_connection(HyperIo::new(stream), service_fn(hello))
//!             .await?;
//!         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//!     });
//!
//!     let stream = TcpStream::connect(addr).await?;
//!     let (mut sender, connection) =
//!         hyper::client::conn::http1::handshake(HyperIo::new(stream)).await?;
//!     vedart::spawn(connection);
//!     let request = Request::get("/").body(Full::new(Bytes::new()))?;
//!     let response = sender.send_request(request).await?;
//!     let body = response.into_body().collect().await?.to_bytes();
//!     assert_eq!(body, "hello, world");
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! `runtime/examples/http.rs` is a complete server (HTTP/1.1 and HTTP/2 on one
//! port, a JSON route); `tests/hyper.rs` runs hyper's client against hyper's
//! server, both on vedart.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::hyper::rt::{Executor, ReadBufCursor, Sleep, Timer};
use futures::io::{AsyncRead, AsyncWrite};

use crate::Handle;
use crate::net::{TcpStream, UnixStream};

/// Runs hyper's background tasks (HTTP/2 streams and connection drivers) as
/// vedart tasks: `hyper::rt::Executor` for any `Send` future.
///
/// # Examples
///
/// ```no_run
/// # async fn serve(stream: vedart::net::TcpStream) -> Result<(), hyper::Error> {
/// # let service = hyper::service::service_fn(|_: hyper::Request<hyper::body::Incoming>| async {
/// #     Ok::<_, hyper::Error>(hyper::Response::new(String::new()))
/// # });
/// use vedart::hyper::{HyperExecutor, HyperIo, HyperTimer};
///
/// hyper::server::conn::http2::Builder::new(HyperExecutor::new())
///     .timer(HyperTimer::new())
///     .serve_connection(HyperIo::new(stream), service)
///     .await
/// # }
/// ```
#[derive(Clone, Default)]
pub struct HyperExecutor {
    /// The runtime to spawn on; `None`: the one current where hyper spawns
    /// (hyper spawns from inside the connection future, which runs on one).
    handle: Option<Handle>,
}

impl HyperExecutor {
    /// An executor that spawns on the runtime current where hyper spawns: the
    /// one running the connection.
    pub fn new() -> HyperExecutor {
        HyperExecutor { handle: None }
    }

    /// An executor that spawns on the runtime of `handle`, wherever hyper
    /// spawns from.
    pub fn with_handle(handle: Handle) -> HyperExecutor {
        HyperExecutor {
            handle: Some(handle),
        }
    }
}

impl fmt::Debug for HyperExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperExecutor")
            .field("pinned_to_a_runtime", &self.handle.is_some())
            .finish()
    }
}

impl<F> Executor<F> for HyperExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// Spawns the task detached (hyper keeps no handle).
    ///
    /// # Panics
    ///
    /// Panics like [`vedart::spawn`](crate::spawn) when built with
    /// [`HyperExecutor::new`] and hyper spawns outside a runtime.
    fn execute(&self, future: F) {
        match &self.handle {
            Some(handle) => drop(handle.spawn(future)),
            None => drop(crate::spawn(future)),
        }
    }
}

/// hyper's timers (header read timeout, keep-alive, HTTP/2 pings) on the
/// current reactor: `hyper::rt::Timer`.
///
/// Set it on every server and client builder that has a timeout: hyper's
/// HTTP/1 server reads request headers under a 30-second timeout only when it
/// has a timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer {
    _private: (),
}

impl HyperTimer {
    /// The timer; its sleeps belong to the reactor current where hyper makes
    /// them (the connection's runtime).
    pub fn new() -> HyperTimer {
        HyperTimer { _private: () }
    }
}

impl Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(HyperSleep(crate::time::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HyperSleep(crate::time::sleep_until(deadline)))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(ours) => ours.get_mut().0.reset(new_deadline),
            // Another timer's sleep: replace it.
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    fn now(&self) -> Instant {
        vedart_reactor::Reactor::current().now()
    }
}

/// A [`crate::time::Sleep`] as a `hyper::rt::Sleep`.
struct HyperSleep(crate::time::Sleep);

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // `Sleep` is Unpin.
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

impl Sleep for HyperSleep {}

/// A byte stream as hyper's I/O: `hyper::rt::Read` and `hyper::rt::Write` over
/// a [`vedart::net::TcpStream`](crate::net::TcpStream), a
/// [`UnixStream`], or any `futures` `AsyncRead +
/// AsyncWrite + Unpin + 'static`. vedart's two sockets read straight into
/// hyper's buffer; another stream gets the buffer zeroed first (`AsyncRead`
/// wants initialized memory).
///
/// See the [module documentation](self) for a server and a client.
pub struct HyperIo<T> {
    inner: T,
}

impl<T> HyperIo<T> {
    /// Wraps a stream.
    pub fn new(inner: T) -> HyperIo<T> {
        HyperIo { inner }
    }

    /// The stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The stream, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: fmt::Debug> fmt::Debug for HyperIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HyperIo").field(&self.inner).finish()
    }
}

impl<T: AsyncRead + Unpin + 'static> ::hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = &mut self.get_mut().inner;
        // SAFETY: the slice is only written (by `recv`, or zeroed and then
        // read into), never de-initialized.
        let unfilled = unsafe { buf.as_mut() };
        // vedart's sockets `recv` straight into hyper's uninitialized buffer;
        // the type test is resolved at compile time.
        let any = inner as &mut dyn Any;
        let read = if let Some(tcp) = any.downcast_mut::<TcpStream>() {
            std::task::ready!(tcp.poll_read_uninit(cx, unfilled))?
        } else if let Some(unix) = any.downcast_mut::<UnixStream>() {
            std::task::ready!(unix.poll_read_uninit(cx, unfilled))?
        } else {
            // `futures`' AsyncRead reads into initialized memory: zero it first.
            std::task::ready!(Pin::new(inner).poll_read(cx, initialize(unfilled)))?
        };
        // SAFETY: the reader wrote `read` bytes at the front of the cursor
        // (at most its length).
        unsafe { buf.advance(read) };
        Poll::Ready(Ok(()))
    }
}

/// Zeroes `buf` and returns it as initialized bytes.
fn initialize(buf: &mut [MaybeUninit<u8>]) -> &mut [u8] {
    buf.fill(MaybeUninit::new(0));
    // SAFETY: every element was just initialized; `MaybeUninit<u8>` and `u8`
    // have the same layout.
    unsafe { &mut *(buf as *mut [MaybeUninit<u8>] as *mut [u8]) }
}

impl<T: AsyncWrite + Unpin> ::hyper::rt::Write for HyperIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    /// `true`: vedart's sockets and pipes write several buffers in one
    /// `writev`, so hyper hands them headers and body without copying them
    /// into one buffer. (For another stream, `futures`' default writes the
    /// first buffer: correct, one buffer per call.)
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}
