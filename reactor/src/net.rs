//! Async TCP and UDP sockets: [`TcpListener`], [`TcpStream`] (with owned
//! [`OwnedReadHalf`] / [`OwnedWriteHalf`]) and [`UdpSocket`].
//!
//! # Implementation
//!
//! Each type is a thin wrapper over [`Async`] around the matching standard
//! library socket (the listener wraps mio's, whose `accept` hands out sockets
//! that are already non-blocking and close-on-exec). Every operation tries its
//! syscall first and waits for the reactor only on `WouldBlock`; see the crate's
//! `README.md` for the readiness protocol.
//!
//! - **Address resolution** happens synchronously, on the calling thread, in the
//!   functions that take [`ToSocketAddrs`] (`bind`, `connect`). A literal address
//!   (`"127.0.0.1:8080"`, a [`SocketAddr`]) resolves without any I/O; a host name
//!   goes through the system resolver and may block. Resolve names up front (for
//!   example on a blocking pool) if that matters.
//! - **Connecting** is non-blocking: the socket is created non-blocking, the
//!   connect is started, and the future waits until the socket is writable and
//!   then reads `SO_ERROR`, so a refused or unreachable peer is an error, never
//!   a hang.
//! - **Sharing**: the `&self` methods ([`TcpListener::accept`],
//!   [`UdpSocket::recv_from`], ...) may be awaited by several tasks at once on
//!   a shared socket. The `AsyncRead` / `AsyncWrite` impls take `&mut self` and
//!   are meant for one reader and one writer; [`TcpStream::split`] gives
//!   one owned half of each kind so that two tasks can read and write at once.

use std::io;
use std::net::{self, Shutdown, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::AsyncWrite;

use crate::async_io::{
    Async, WaiterGuard, async_write_methods, impl_async_read, impl_debug, impl_fd, impl_incoming,
    impl_split_halves,
};
use crate::registration::Direction;
use crate::sync::Arc;

/// Tries `f` on every address `addrs` resolves to, returning the first success
/// or the last error.
fn each_addr<T>(
    addrs: impl ToSocketAddrs,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_err = None;
    for addr in addrs.to_socket_addrs()? {
        match f(addr) {
            Ok(value) => return Ok(value),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

// ---------------------------------------------------------------------------
// TcpListener
// ---------------------------------------------------------------------------

/// A TCP socket server, listening for connections.
///
/// # Examples
///
#[doc = example!()]
/// use futures::{AsyncReadExt, AsyncWriteExt};
/// use vedart_reactor::net::{TcpListener, TcpStream};
///
/// futures::executor::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let addr = listener.local_addr()?;
///     let client = async {
///         let mut stream = TcpStream::connect(addr).await?;
///         stream.write_all(b"hello").await?;
///         std::io::Result::Ok(())
///     };
///     let server = async {
///         let (mut stream, _peer) = listener.accept().await?;
///         let mut buf = [0; 5];
///         stream.read_exact(&mut buf).await?;
///         assert_eq!(&buf, b"hello");
///         std::io::Result::Ok(())
///     };
///     let (c, s) = futures::join!(client, server);
///     c?;
///     s
/// })
/// .unwrap();
/// ```
pub struct TcpListener {
    inner: Async<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds a listener to `addr`, trying each resolved address in turn, and
    /// registers it with [`Reactor::current`](crate::Reactor::current). Port 0
    /// picks a free port; see [`TcpListener::local_addr`].
    ///
    /// Name resolution is synchronous (see the module docs).
    ///
    /// # Errors
    ///
    /// Fails if no address resolves, none can be bound (in use, not permitted),
    /// or the socket cannot be registered with the reactor.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let listener = each_addr(addr, net::TcpListener::bind)?;
        TcpListener::try_from(listener)
    }

    /// Accepts a new connection, returning the stream and the peer's address.
    ///
    /// Several tasks may wait in `accept` on the same listener; each new
    /// connection goes to one of them.
    ///
    /// # Errors
    ///
    /// The OS error of `accept` (for example too many open files), or an error
    /// if the reactor shut down.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self.inner.read_with(|listener| listener.accept()).await?;
        Ok((TcpStream::from_mio(stream)?, addr))
    }

    /// A stream of incoming connections; it never ends, and yields an error
    /// item for each failed accept.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// use futures::StreamExt;
    /// use vedart_reactor::net::{TcpListener, TcpStream};
    ///
    /// futures::executor::block_on(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0")?;
    ///     let _client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let mut incoming = listener.incoming();
    ///     let accepted = incoming.next().await.expect("incoming never ends")?;
    ///     assert_eq!(accepted.local_addr()?, listener.local_addr()?);
    ///     std::io::Result::Ok(())
    /// })
    /// .unwrap();
    /// ```
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

    /// Sets the IP time-to-live of accepted sockets.
    ///
    /// # Errors
    ///
    /// The OS error of `setsockopt`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get_ref().set_ttl(ttl)
    }

    /// Deregisters the listener and returns it as a standard listener, still
    /// in non-blocking mode.
    ///
    /// # Errors
    ///
    /// As [`Async::into_inner`].
    pub fn into_std(self) -> io::Result<net::TcpListener> {
        Ok(self.inner.into_inner()?.into())
    }
}

impl TryFrom<net::TcpListener> for TcpListener {
    type Error = io::Error;

    /// Registers a bound standard listener with the current reactor.
    fn try_from(listener: net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener {
            inner: Async::new(mio::net::TcpListener::from_std(listener))?,
        })
    }
}

impl_debug!(TcpListener: local_addr);
impl_fd!(TcpListener);

/// The stream of connections of [`TcpListener::incoming`].
#[must_use = "streams do nothing unless polled"]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
    /// This stream's place among the listener's read waiters.
    waiter: WaiterGuard<'a, mio::net::TcpListener>,
}

impl_incoming!(Incoming => TcpStream, TcpStream::from_mio);

// ---------------------------------------------------------------------------
// TcpStream
// ---------------------------------------------------------------------------

/// A TCP connection. Read and write it through [`futures::io::AsyncReadExt`] and
/// [`futures::io::AsyncWriteExt`].
///
/// [`AsyncWrite::poll_close`] shuts down the write direction, so the peer reads
/// end-of-file; dropping the stream closes the socket.
///
/// # Examples
///
#[doc = example!()]
/// use futures::{AsyncReadExt, AsyncWriteExt};
/// use vedart_reactor::net::{TcpListener, TcpStream};
///
/// futures::executor::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
///     let (mut server, _) = listener.accept().await?;
///     client.write_all(b"ping").await?;
///     client.close().await?; // shutdown(Write): the server sees EOF
///     let mut got = Vec::new();
///     server.read_to_end(&mut got).await?;
///     assert_eq!(got, b"ping");
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub struct TcpStream {
    inner: Async<net::TcpStream>,
}

impl TcpStream {
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

    /// Opens a connection to `addr`, trying each resolved address in turn.
    ///
    /// Name resolution is synchronous (see the module docs); the connect itself
    /// never blocks the thread.
    ///
    /// # Errors
    ///
    /// Fails if no address resolves, or with the error of the last address
    /// tried (for example `ConnectionRefused` when nothing listens there).
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last_err = None;
        for addr in addr.to_socket_addrs()? {
            match TcpStream::connect_addr(addr).await {
                Ok(stream) => return Ok(stream),
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "could not resolve to any address",
            )
        }))
    }

    /// Connects to one address without blocking.
    async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
        // mio creates the socket non-blocking and close-on-exec and starts the
        // connect (EINPROGRESS is its success).
        let stream = TcpStream::from_mio(mio::net::TcpStream::connect(addr)?)?;
        // Writable means the handshake finished, one way or the other.
        stream
            .inner
            .write_with(|socket| {
                if let Some(err) = socket.take_error()? {
                    return Err(err);
                }
                match socket.peer_addr() {
                    Ok(_) => Ok(()),
                    // Still in progress: this readiness was spurious.
                    Err(err) if err.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(err) => Err(err),
                }
            })
            .await?;
        Ok(stream)
    }

    fn from_mio(stream: mio::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            inner: Async::new(net::TcpStream::from(stream))?,
        })
    }

    /// The local address of this connection.
    ///
    /// # Errors
    ///
    /// The OS error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// The remote address of this connection.
    ///
    /// # Errors
    ///
    /// The OS error of `getpeername` (`NotConnected` once the peer is gone).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// Shuts down the read, write, or both directions. Shutting down `Write`
    /// makes the peer read end-of-file once it has read what was sent.
    ///
    /// # Errors
    ///
    /// The OS error of `shutdown` (`NotConnected` if the peer already reset it).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get_ref().shutdown(how)
    }

    /// Sets `TCP_NODELAY`: send small writes at once instead of coalescing them
    /// (Nagle's algorithm). Request/response protocols usually want it on.
    ///
    /// # Errors
    ///
    /// The OS error of `setsockopt`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get_ref().set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    ///
    /// The OS error of `getsockopt`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.get_ref().nodelay()
    }

    /// Sets the IP time-to-live of this socket.
    ///
    /// # Errors
    ///
    /// The OS error of `setsockopt`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get_ref().set_ttl(ttl)
    }

    /// Reads received data without consuming it, waiting until some arrives.
    /// Returns 0 at end-of-file.
    ///
    /// # Errors
    ///
    /// The OS error of `recv`, or an error if the reactor shut down.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_with(|socket| socket.peek(buf)).await
    }

    /// Splits the stream into a read half and a write half that can move to
    /// different tasks. Both share the socket; it closes when both are dropped.
    ///
    /// Dropping (or closing) the [`OwnedWriteHalf`] shuts down the write
    /// direction, so the peer reads end-of-file.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// use futures::{AsyncReadExt, AsyncWriteExt};
    /// use vedart_reactor::net::{TcpListener, TcpStream};
    ///
    /// futures::executor::block_on(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0")?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///     let (mut read, mut write) = server.split();
    ///     let (mut client_read, mut client_write) = client.split();
    ///     client_write.write_all(b"hi").await?;
    ///     let mut buf = [0; 2];
    ///     read.read_exact(&mut buf).await?;
    ///     write.write_all(&buf).await?;
    ///     client_read.read_exact(&mut buf).await?;
    ///     assert_eq!(&buf, b"hi");
    ///     std::io::Result::Ok(())
    /// })
    /// .unwrap();
    /// ```
    pub fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        split_halves(self.inner)
    }

    /// The same as [`TcpStream::split`], under tokio's name for it.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.split()
    }

    /// Deregisters the stream and returns it as a standard stream, still in
    /// non-blocking mode.
    ///
    /// # Errors
    ///
    /// As [`Async::into_inner`].
    pub fn into_std(self) -> io::Result<net::TcpStream> {
        self.inner.into_inner()
    }
}

impl TryFrom<net::TcpStream> for TcpStream {
    type Error = io::Error;

    /// Registers a connected standard stream with the current reactor,
    /// switching it to non-blocking mode.
    fn try_from(stream: net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            inner: Async::new(stream)?,
        })
    }
}

impl_debug!(TcpStream: local_addr, peer_addr);
impl_fd!(TcpStream);
impl_async_read!(TcpStream, socket);

impl AsyncWrite for TcpStream {
    async_write_methods!();

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown(Shutdown::Write))
    }
}

/// The read half of a [`TcpStream`], from [`TcpStream::split`].
pub struct OwnedReadHalf {
    inner: Arc<Async<net::TcpStream>>,
}

impl OwnedReadHalf {
    /// The remote address of the connection.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// The local address of the connection.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }
}

/// The write half of a [`TcpStream`], from [`TcpStream::split`].
///
/// Dropping it, or closing it with [`AsyncWrite::poll_close`], shuts down the
/// write direction of the connection so that the peer reads end-of-file.
pub struct OwnedWriteHalf {
    inner: Arc<Async<net::TcpStream>>,
    /// Cleared once `poll_close` has shut the direction down.
    shutdown_on_drop: bool,
}

impl OwnedWriteHalf {
    /// The remote address of the connection.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// The local address of the connection.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Sets `TCP_NODELAY`; see [`TcpStream::set_nodelay`].
    ///
    /// # Errors
    ///
    /// The OS error of `setsockopt`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get_ref().set_nodelay(nodelay)
    }
}

impl_split_halves!(net::TcpStream => OwnedReadHalf, OwnedWriteHalf);

// ---------------------------------------------------------------------------
// UdpSocket
// ---------------------------------------------------------------------------

/// A UDP socket. Every method takes `&self`, so one socket can be shared (for
/// example in an `Arc`) by tasks that send and receive at once.
///
/// # Examples
///
#[doc = example!()]
/// use vedart_reactor::net::UdpSocket;
///
/// futures::executor::block_on(async {
///     let a = UdpSocket::bind("127.0.0.1:0")?;
///     let b = UdpSocket::bind("127.0.0.1:0")?;
///     a.send_to(b"hi", b.local_addr()?).await?;
///     let mut buf = [0; 16];
///     let (n, from) = b.recv_from(&mut buf).await?;
///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr()?));
///     std::io::Result::Ok(())
/// })
/// .unwrap();
/// ```
pub struct UdpSocket {
    inner: Async<net::UdpSocket>,
}

impl UdpSocket {
    /// Binds a socket to `addr`, trying each resolved address in turn. Port 0
    /// picks a free port. Name resolution is synchronous (see the module docs).
    ///
    /// # Errors
    ///
    /// Fails if no address resolves or can be bound, or the socket cannot be
    /// registered with the reactor.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        UdpSocket::try_from(each_addr(addr, net::UdpSocket::bind)?)
    }

    /// Sends a datagram to `target`, waiting while the send buffer is full.
    /// Returns the number of bytes sent.
    ///
    /// # Errors
    ///
    /// The OS error of `sendto` (for example `MessageTooLong`-style `EMSGSIZE`).
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        self.inner
            .write_with(|socket| socket.send_to(buf, target))
            .await
    }

    /// Receives one datagram, returning its length and sender. A datagram
    /// longer than `buf` is truncated.
    ///
    /// # Errors
    ///
    /// The OS error of `recvfrom`, or an error if the reactor shut down.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.read_with(|socket| socket.recv_from(buf)).await
    }

    /// Like [`UdpSocket::recv_from`], but leaves the datagram in the queue.
    ///
    /// # Errors
    ///
    /// As [`UdpSocket::recv_from`].
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.read_with(|socket| socket.peek_from(buf)).await
    }

    /// Sets the default peer: [`UdpSocket::send`] goes there and
    /// [`UdpSocket::recv`] only receives from there. Name resolution is
    /// synchronous (see the module docs).
    ///
    /// # Errors
    ///
    /// Fails if no address resolves or the OS rejects it.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        self.inner.get_ref().connect(addr)
    }

    /// Sends a datagram to the connected peer.
    ///
    /// # Errors
    ///
    /// The OS error of `send`: `EDESTADDRREQ` (Linux) or `NotConnected` without
    /// a prior [`UdpSocket::connect`]; `ConnectionRefused` may report an ICMP
    /// error caused by an earlier datagram.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_with(|socket| socket.send(buf)).await
    }

    /// Receives a datagram from the connected peer.
    ///
    /// # Errors
    ///
    /// As [`UdpSocket::send`].
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

    /// The connected peer's address.
    ///
    /// # Errors
    ///
    /// `NotConnected` without a prior [`UdpSocket::connect`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// Allows sending to broadcast addresses.
    ///
    /// # Errors
    ///
    /// The OS error of `setsockopt`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.inner.get_ref().set_broadcast(on)
    }

    /// Deregisters the socket and returns it as a standard socket, still in
    /// non-blocking mode.
    ///
    /// # Errors
    ///
    /// As [`Async::into_inner`].
    pub fn into_std(self) -> io::Result<net::UdpSocket> {
        self.inner.into_inner()
    }
}

impl TryFrom<net::UdpSocket> for UdpSocket {
    type Error = io::Error;

    /// Registers a bound standard socket with the current reactor, switching it
    /// to non-blocking mode.
    fn try_from(socket: net::UdpSocket) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            inner: Async::new(socket)?,
        })
    }
}

impl_debug!(UdpSocket: local_addr);
impl_fd!(UdpSocket);
