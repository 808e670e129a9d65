//! Async Unix domain sockets: [`UnixListener`], [`UnixStream`] (with owned
//! [`OwnedReadHalf`] / [`OwnedWriteHalf`]) and [`UnixDatagram`].
//!
//! # Implementation
//!
//! The same shape as the TCP types in [`crate::net`]: thin wrappers over
//! [`Async`] around the standard library sockets (the listener wraps mio's,
//! whose `accept` returns non-blocking, close-on-exec sockets). Paths are used
//! as given; nothing here resolves or blocks. Binding to a path that exists
//! fails with `AddrInUse`: remove a stale socket file first.
//!
//! [`UnixStream::connect`] is non-blocking. A Unix connect normally completes at
//! once; when the listener's backlog is full it fails with `WouldBlock`, which
//! is returned to the caller rather than retried forever.

use std::io;
use std::net::Shutdown;
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::AsyncWrite;

use crate::async_io::{
    Async, WaiterGuard, async_write_methods, impl_async_read, impl_debug, impl_fd, impl_incoming,
    impl_split_halves,
};
use crate::registration::Direction;
use crate::sync::Arc;

// ---------------------------------------------------------------------------
// UnixListener
// ---------------------------------------------------------------------------

/// A Unix domain socket server, listening for connections.
///
/// # Examples
///
#[doc = example!()]
/// use futures::{AsyncReadExt, AsyncWriteExt};
/// use vedart_reactor::unix::{UnixListener, UnixStream};
///
/// let dir = std::env::temp_dir().join(format!("veda-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("listener.sock");
/// let _ = std::fs::remove_file(&path);
/// futures::executor::block_on(async {
///     let listener = UnixListener::bind(&path)?;
///     let mut client = UnixStream::connect(&path).await?;
///     let (mut server, _) = listener.accept().await?;
///     client.write_all(b"hi").await?;
///     let mut buf = [0; 2];
///     server.read_exact(&mut buf).await?;
///     assert_eq!(&buf, b"hi");
///     std::io::Result::Ok(())
/// })?;
/// std::fs::remove_dir_all(&dir)?;
/// # std::io::Result::Ok(())
/// ```
pub struct UnixListener {
    inner: Async<mio::net::UnixListener>,
}

impl UnixListener {
    /// Binds a listener to the socket file `path` (which must not exist) and
    /// registers it with [`Reactor::current`](crate::Reactor::current).
    ///
    /// # Errors
    ///
    /// Fails if the path exists (`AddrInUse`), its directory is missing or not
    /// writable, or the socket cannot be registered with the reactor.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        UnixListener::try_from(net::UnixListener::bind(path)?)
    }

    /// Accepts a new connection, returning the stream and the peer's address
    /// (usually unnamed). Several tasks may wait here at once.
    ///
    /// # Errors
    ///
    /// The OS error of `accept`, or an error if the reactor shut down.
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (stream, addr) = self.inner.read_with(|listener| listener.accept()).await?;
        Ok((UnixStream::from_std(net::UnixStream::from(stream))?, addr))
    }

    /// A stream of incoming connections; it never ends, and yields an error
    /// item for each failed accept.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming {
            listener: self,
            waiter: WaiterGuard::new(&self.inner, Direction::Read),
        }
    }

    /// The address this listener is bound to.
    ///
    /// # Errors
    ///
    /// The OS error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Deregisters the listener and returns it as a standard listener, still
    /// in non-blocking mode.
    ///
    /// # Errors
    ///
    /// As [`Async::into_inner`].
    pub fn into_std(self) -> io::Result<net::UnixListener> {
        Ok(self.inner.into_inner()?.into())
    }
}

impl TryFrom<net::UnixListener> for UnixListener {
    type Error = io::Error;

    /// Registers a bound standard listener with the current reactor,
    /// switching it to non-blocking mode.
    fn try_from(listener: net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener {
            inner: Async::new(mio::net::UnixListener::from_std(listener))?,
        })
    }
}

impl_debug!(UnixListener: local_addr);
impl_fd!(UnixListener);

/// The stream of connections of [`UnixListener::incoming`].
#[must_use = "streams do nothing unless polled"]
pub struct Incoming<'a> {
    listener: &'a UnixListener,
    /// This stream's place among the listener's read waiters.
    waiter: WaiterGuard<'a, mio::net::UnixListener>,
}

impl_incoming!(Incoming => UnixStream, |stream| UnixStream::from_std(net::UnixStream::from(stream)));

// ---------------------------------------------------------------------------
// UnixStream
// ---------------------------------------------------------------------------

/// A Unix domain stream connection. [`AsyncWrite::poll_close`] shuts down the
/// write direction, so the peer reads end-of-file.
///
/// # Examples
///
#[doc = example!()]
/// use futures::{AsyncReadExt, AsyncWriteExt};
/// use vedart_reactor::unix::UnixStream;
///
/// futures::executor::block_on(async {
///     let (mut a, mut b) = UnixStream::pair()?;
///     a.write_all(b"ping").await?;
///     a.close().await?;
///     let mut got = Vec::new();
///     b.read_to_end(&mut got).await?;
///     assert_eq!(got, b"ping");
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub struct UnixStream {
    inner: Async<net::UnixStream>,
}

impl UnixStream {
    /// Reads into memory that need not be initialized, as
    /// [`AsyncRead::poll_read`](futures::io::AsyncRead::poll_read) does into
    /// initialized memory: `Ready(Ok(n))` means the first `n` bytes of `buf`
    /// were written (0: end of file). For adapters whose callers hand out
    /// uninitialized buffers (hyper's `Read`, see `vedart::hyper::HyperIo`), so
    /// that nothing is zeroed first.
    ///
    /// # Errors
    ///
    /// The OS error of `recv`, or an error if the reactor shut down.
    pub fn poll_read_uninit(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv_uninit(cx, buf)
    }

    /// Connects to the socket file at `path` without blocking.
    ///
    /// # Errors
    ///
    /// `NotFound` if nothing is bound at `path`, `ConnectionRefused` if its
    /// listener is gone, `WouldBlock` if its backlog is full.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let stream =
            UnixStream::from_std(net::UnixStream::from(mio::net::UnixStream::connect(path)?))?;
        // Writable means the connection is established or failed.
        stream
            .inner
            .write_with(|socket| match socket.take_error()? {
                Some(err) => Err(err),
                None => Ok(()),
            })
            .await?;
        Ok(stream)
    }

    /// Creates a pair of connected, unnamed sockets.
    ///
    /// # Errors
    ///
    /// The OS error of `socketpair`, or a registration error.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    fn from_std(stream: net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream {
            inner: Async::new(stream)?,
        })
    }

    /// The local address of this socket.
    ///
    /// # Errors
    ///
    /// The OS error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// The address of the peer.
    ///
    /// # Errors
    ///
    /// The OS error of `getpeername`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// Shuts down the read, write, or both directions.
    ///
    /// # Errors
    ///
    /// The OS error of `shutdown`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get_ref().shutdown(how)
    }

    /// Splits the stream into halves that can move to different tasks; see
    /// [`TcpStream::split`](crate::net::TcpStream::split). Dropping the write
    /// half shuts down the write direction.
    pub fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        split_halves(self.inner)
    }

    /// The same as [`UnixStream::split`], under tokio's name for it.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.split()
    }

    /// Deregisters the stream and returns it as a standard stream, still in
    /// non-blocking mode.
    ///
    /// # Errors
    ///
    /// As [`Async::into_inner`].
    pub fn into_std(self) -> io::Result<net::UnixStream> {
        self.inner.into_inner()
    }
}

impl TryFrom<net::UnixStream> for UnixStream {
    type Error = io::Error;

    /// Registers a connected standard stream with the current reactor,
    /// switching it to non-blocking mode.
    fn try_from(stream: net::UnixStream) -> io::Result<UnixStream> {
        UnixStream::from_std(stream)
    }
}

impl_debug!(UnixStream);
impl_fd!(UnixStream);
impl_async_read!(UnixStream, socket);

impl AsyncWrite for UnixStream {
    async_write_methods!();

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown(Shutdown::Write))
    }
}

/// The read half of a [`UnixStream`], from [`UnixStream::split`].
pub struct OwnedReadHalf {
    inner: Arc<Async<net::UnixStream>>,
}

/// The write half of a [`UnixStream`], from [`UnixStream::split`].
/// Dropping or closing it shuts down the write direction.
pub struct OwnedWriteHalf {
    inner: Arc<Async<net::UnixStream>>,
    /// Cleared once `poll_close` has shut the direction down.
    shutdown_on_drop: bool,
}

impl_split_halves!(net::UnixStream => OwnedReadHalf, OwnedWriteHalf);

// ---------------------------------------------------------------------------
// UnixDatagram
// ---------------------------------------------------------------------------

/// A Unix domain datagram socket. Every method takes `&self`, so tasks may
/// share one socket.
///
/// # Examples
///
#[doc = example!()]
/// use vedart_reactor::unix::UnixDatagram;
///
/// futures::executor::block_on(async {
///     let (a, b) = UnixDatagram::pair()?;
///     a.send(b"one").await?;
///     let mut buf = [0; 8];
///     let n = b.recv(&mut buf).await?;
///     assert_eq!(&buf[..n], b"one");
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub struct UnixDatagram {
    inner: Async<net::UnixDatagram>,
}

impl UnixDatagram {
    /// Binds a datagram socket to the socket file `path` (which must not exist).
    ///
    /// # Errors
    ///
    /// As [`UnixListener::bind`].
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        UnixDatagram::try_from(net::UnixDatagram::bind(path)?)
    }

    /// A socket bound to no address: it can send, and receive replies only
    /// once connected.
    ///
    /// # Errors
    ///
    /// The OS error of `socket`, or a registration error.
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::try_from(net::UnixDatagram::unbound()?)
    }

    /// A pair of connected, unnamed datagram sockets.
    ///
    /// # Errors
    ///
    /// The OS error of `socketpair`, or a registration error.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = net::UnixDatagram::pair()?;
        Ok((UnixDatagram::try_from(a)?, UnixDatagram::try_from(b)?))
    }

    /// Sets the default peer for [`UnixDatagram::send`] / [`UnixDatagram::recv`].
    ///
    /// # Errors
    ///
    /// The OS error of `connect` (`NotFound` if nothing is bound at `path`).
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.inner.get_ref().connect(path)
    }

    /// Sends a datagram to the socket bound at `path`.
    ///
    /// # Errors
    ///
    /// The OS error of `sendto`.
    pub async fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let path = path.as_ref();
        self.inner
            .write_with(|socket| socket.send_to(buf, path))
            .await
    }

    /// Receives a datagram and its sender's address.
    ///
    /// # Errors
    ///
    /// The OS error of `recvfrom`, or an error if the reactor shut down.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.read_with(|socket| socket.recv_from(buf)).await
    }

    /// Sends a datagram to the connected peer.
    ///
    /// # Errors
    ///
    /// The OS error of `send` (`NotConnected` without a peer).
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_with(|socket| socket.send(buf)).await
    }

    /// Receives a datagram from the connected peer.
    ///
    /// # Errors
    ///
    /// The OS error of `recv`, or an error if the reactor shut down.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_with(|socket| socket.recv(buf)).await
    }

    /// The address this socket is bound to.
    ///
    /// # Errors
    ///
    /// The OS error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Shuts down the read, write, or both directions.
    ///
    /// # Errors
    ///
    /// The OS error of `shutdown`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get_ref().shutdown(how)
    }
}

impl TryFrom<net::UnixDatagram> for UnixDatagram {
    type Error = io::Error;

    /// Registers a standard datagram socket with the current reactor,
    /// switching it to non-blocking mode.
    fn try_from(socket: net::UnixDatagram) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            inner: Async::new(socket)?,
        })
    }
}

impl_debug!(UnixDatagram);
impl_fd!(UnixDatagram);
