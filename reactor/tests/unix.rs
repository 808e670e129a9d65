//! Unix domain sockets: stream pairs, listener round trips, split halves and
//! datagrams.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

mod common;

use std::io::ErrorKind;
use std::net::Shutdown;
use std::path::PathBuf;

use common::within;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::stream::StreamExt;
use vedart_reactor::unix::{UnixDatagram, UnixListener, UnixStream};

/// A fresh directory for one test's socket files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("veda-unix-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn pair_round_trip_and_eof() {
    within(async {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        b.write_all(b"pong").await.unwrap();
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        a.shutdown(Shutdown::Write).unwrap();
        assert_eq!(b.read(&mut buf).await.unwrap(), 0, "shutdown gives EOF");
        drop(b);
        assert_eq!(
            a.read(&mut buf).await.unwrap(),
            0,
            "a closed peer gives EOF"
        );
    });
}

#[test]
fn listener_round_trip() {
    let dir = TempDir::new("listener");
    let path = dir.path("echo.sock");
    within(async {
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.as_path())
        );
        let server = async {
            let mut incoming = listener.incoming();
            for _ in 0..3 {
                let mut stream = incoming.next().await.unwrap().unwrap();
                let mut msg = Vec::new();
                stream.read_to_end(&mut msg).await.unwrap();
                stream.write_all(&msg).await.unwrap();
            }
        };
        let clients = async {
            for i in 0..3u8 {
                let mut stream = UnixStream::connect(&path).await.unwrap();
                assert_eq!(
                    stream.peer_addr().unwrap().as_pathname(),
                    Some(path.as_path())
                );
                stream.write_all(&[i; 100]).await.unwrap();
                stream.close().await.unwrap();
                let mut reply = Vec::new();
                stream.read_to_end(&mut reply).await.unwrap();
                assert_eq!(reply, vec![i; 100]);
            }
        };
        futures::join!(server, clients);
    });
}

#[test]
fn accept_returns_the_connection() {
    let dir = TempDir::new("accept");
    let path = dir.path("a.sock");
    within(async {
        let listener = UnixListener::bind(&path).unwrap();
        let (client, accepted) = futures::join!(UnixStream::connect(&path), listener.accept());
        let mut client = client.unwrap();
        let (mut server, _peer) = accepted.unwrap();
        client.write_all(b"x").await.unwrap();
        let mut buf = [0; 1];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"x");
    });
}

#[test]
fn connect_errors_instead_of_hanging() {
    let dir = TempDir::new("missing");
    let err = within(UnixStream::connect(dir.path("nobody.sock"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // A socket file whose listener is gone refuses the connection.
    let path = dir.path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let err = within(UnixStream::connect(&path)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);

    // Binding over an existing file is refused.
    assert_eq!(
        UnixListener::bind(&path).unwrap_err().kind(),
        ErrorKind::AddrInUse
    );
}

#[test]
fn split_halves_work_from_two_threads() {
    let (a, mut b) = UnixStream::pair().unwrap();
    let (mut read_half, mut write_half) = a.into_split();
    let writer = std::thread::spawn(move || {
        within(async {
            for i in 0..1000u32 {
                write_half.write_all(&i.to_le_bytes()).await.unwrap();
            }
        }); // dropping the write half shuts down the write direction
    });
    let reader = std::thread::spawn(move || {
        within(async {
            let mut got = Vec::new();
            read_half.read_to_end(&mut got).await.unwrap();
            got
        })
    });
    // `b` echoes until EOF.
    within(async {
        let mut buf = [0; 4096];
        loop {
            let n = b.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            b.write_all(&buf[..n]).await.unwrap();
        }
        b.close().await.unwrap();
    });
    writer.join().unwrap();
    let expected: Vec<u8> = (0..1000u32).flat_map(u32::to_le_bytes).collect();
    assert_eq!(reader.join().unwrap(), expected);
}

#[test]
fn datagram_pair_and_bound_sockets() {
    let dir = TempDir::new("dgram");
    within(async {
        let (a, b) = UnixDatagram::pair().unwrap();
        a.send(b"one").await.unwrap();
        a.send(b"two").await.unwrap();
        let mut buf = [0; 8];
        let n = b.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"one", "datagram boundaries are kept");
        let n = b.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"two");

        let server_path = dir.path("server.sock");
        let client_path = dir.path("client.sock");
        let server = UnixDatagram::bind(&server_path).unwrap();
        let client = UnixDatagram::bind(&client_path).unwrap();
        client.send_to(b"hi", &server_path).await.unwrap();
        let (n, from) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(from.as_pathname(), Some(client_path.as_path()));

        let unbound = UnixDatagram::unbound().unwrap();
        unbound.connect(&server_path).unwrap();
        unbound.send(b"anon").await.unwrap();
        let (n, _) = server.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"anon");
    });
}
