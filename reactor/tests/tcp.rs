//! TCP: echo round trips, many connections, split halves on two threads,
//! shutdown and EOF, refused connects, and concurrent accepts.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

mod common;

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use common::{DrivenReactor, read_all, within};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::stream::StreamExt;
use vedart_reactor::net::{TcpListener, TcpStream};
use vedart_reactor::sleep;

/// Echoes everything it reads until EOF, then closes its write side.
async fn echo(mut stream: TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0; 16 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            stream.close().await?;
            return Ok(total);
        }
        stream.write_all(&buf[..n]).await?;
        total += n as u64;
    }
}

#[test]
fn echo_round_trip() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = async {
            let (stream, peer) = listener.accept().await.unwrap();
            assert_eq!(stream.peer_addr().unwrap(), peer);
            echo(stream).await.unwrap()
        };
        let client = async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            assert_eq!(stream.peer_addr().unwrap(), addr);
            stream.set_nodelay(true).unwrap();
            assert!(stream.nodelay().unwrap());
            let mut reply = [0; 5];
            for round in 0..100u32 {
                let msg = format!("{:05}", round);
                stream.write_all(msg.as_bytes()).await.unwrap();
                stream.read_exact(&mut reply).await.unwrap();
                assert_eq!(&reply, msg.as_bytes());
            }
            stream.close().await.unwrap();
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        };
        let (echoed, ()) = futures::join!(server, client);
        assert_eq!(echoed, 500);
    });
}

#[test]
fn connect_accepts_a_host_and_port_string() {
    within(async {
        let listener = TcpListener::bind("localhost:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // `localhost` may resolve to ::1 and 127.0.0.1 in either order: connect
        // falls through the addresses until one answers.
        let (client, accepted) =
            futures::join!(TcpStream::connect(("localhost", port)), listener.accept());
        let (client, (server, _)) = (client.unwrap(), accepted.unwrap());
        assert_eq!(client.local_addr().unwrap(), server.peer_addr().unwrap());
    });
}

#[test]
fn many_concurrent_connections() {
    const CONNECTIONS: usize = 100;
    const ROUNDS: usize = 20;
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server =
            listener
                .incoming()
                .take(CONNECTIONS)
                .for_each_concurrent(None, |stream| async {
                    echo(stream.unwrap()).await.unwrap();
                });
        let clients = futures::future::join_all((0..CONNECTIONS).map(|id| async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut reply = [0u8; 8];
            for round in 0..ROUNDS {
                let msg = ((id * ROUNDS + round) as u64).to_le_bytes();
                stream.write_all(&msg).await.unwrap();
                stream.read_exact(&mut reply).await.unwrap();
                assert_eq!(reply, msg);
            }
        }));
        futures::join!(server, clients);
    });
}

#[test]
fn split_halves_work_from_two_threads() {
    const LEN: usize = 4 << 20;
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let (listener, addr) = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    };
    let server = std::thread::spawn(move || {
        within(async {
            let (stream, _) = listener.accept().await.unwrap();
            echo(stream).await.unwrap()
        })
    });
    let stream = within(TcpStream::connect(addr)).unwrap();
    let (mut read_half, mut write_half) = stream.split();
    assert_eq!(read_half.peer_addr().unwrap(), addr);
    assert_eq!(write_half.peer_addr().unwrap(), addr);
    let to_send = data.clone();
    // The writer and the reader run on different threads at the same time: the
    // echo only drains as fast as the reader reads, so neither can finish alone.
    let writer = std::thread::spawn(move || {
        within(async {
            for chunk in to_send.chunks(64 * 1024) {
                write_half.write_all(chunk).await.unwrap();
            }
            // Dropping the write half shuts down the write direction: the echo
            // server sees EOF and closes, and our reader sees EOF in turn.
            drop(write_half);
        })
    });
    let reader =
        std::thread::spawn(move || within(async { read_all(&mut read_half).await.unwrap() }));
    writer.join().unwrap();
    let got = reader.join().unwrap();
    assert_eq!(server.join().unwrap(), LEN as u64);
    assert!(got == data, "the echoed bytes match what was sent");
}

#[test]
fn shutdown_write_gives_eof_to_the_peer_and_keeps_the_other_direction() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = futures::join!(TcpStream::connect(addr), listener.accept());
        let mut client = client.unwrap();
        let (mut server, _) = accepted.unwrap();

        client.write_all(b"request").await.unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut request = Vec::new();
        server.read_to_end(&mut request).await.unwrap();
        assert_eq!(request, b"request");
        assert_eq!(server.read(&mut [0; 8]).await.unwrap(), 0, "EOF stays EOF");

        // Half-closed: the reply still flows the other way.
        server.write_all(b"reply").await.unwrap();
        drop(server);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"reply");
    });
}

#[test]
fn a_reader_waiting_when_the_peer_closes_sees_eof() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = futures::join!(TcpStream::connect(addr), listener.accept());
        let mut client = client.unwrap();
        let (server, _) = accepted.unwrap();
        let reader = async { client.read(&mut [0; 16]).await.unwrap() };
        let closer = async {
            sleep(Duration::from_millis(20)).await;
            drop(server);
        };
        let (n, ()) = futures::join!(reader, closer);
        assert_eq!(n, 0);
    });
}

#[test]
fn connect_to_a_closed_port_is_an_error_not_a_hang() {
    let addr: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }; // dropped: nothing listens there any more
    let err = within(TcpStream::connect(addr)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn connect_to_an_unresolvable_address_is_an_error() {
    let err = within(TcpStream::connect("not an address")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(TcpListener::bind("256.0.0.1:0").is_err());
}

#[test]
fn several_tasks_can_wait_in_accept_on_one_listener() {
    // Two threads (two tasks with different wakers) wait in `accept` before any
    // client connects; each connection must wake a waiter. With one waker slot
    // per direction the first waiter's waker is overwritten and it hangs.
    let listener = std::sync::Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = listener.local_addr().unwrap();
    let acceptors: Vec<_> = (0..2)
        .map(|_| {
            let listener = listener.clone();
            std::thread::spawn(move || within(listener.accept()).unwrap().0)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50)); // let both start waiting
    let clients = within(async {
        let a = TcpStream::connect(addr).await.unwrap();
        let b = TcpStream::connect(addr).await.unwrap();
        (a, b)
    });
    let accepted: Vec<TcpStream> = acceptors.into_iter().map(|t| t.join().unwrap()).collect();
    let mut peers: Vec<SocketAddr> = accepted.iter().map(|s| s.peer_addr().unwrap()).collect();
    let mut locals = vec![
        clients.0.local_addr().unwrap(),
        clients.1.local_addr().unwrap(),
    ];
    peers.sort();
    locals.sort();
    assert_eq!(peers, locals);
}

#[test]
fn peek_does_not_consume() {
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = futures::join!(TcpStream::connect(addr), listener.accept());
        let mut client = client.unwrap();
        let (mut server, _) = accepted.unwrap();
        client.write_all(b"abc").await.unwrap();
        let mut buf = [0; 3];
        let mut seen = 0;
        while seen < 3 {
            seen = server.peek(&mut buf).await.unwrap();
        }
        assert_eq!(&buf, b"abc");
        let mut again = [0; 3];
        server.read_exact(&mut again).await.unwrap();
        assert_eq!(&again, b"abc");
    });
}

#[test]
fn std_conversions_round_trip() {
    within(async {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = TcpListener::try_from(std_listener).unwrap();
        let std_client = std::net::TcpStream::connect(addr).unwrap();
        let mut client = TcpStream::try_from(std_client).unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut server = TcpStream::try_from(server.into_std().unwrap()).unwrap();
        client.write_all(b"x").await.unwrap();
        let mut buf = [0; 1];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"x");
        assert_eq!(listener.into_std().unwrap().local_addr().unwrap(), addr);
    });
}

#[test]
fn tcp_on_a_private_driven_reactor() {
    let driven = DrivenReactor::new();
    let _enter = driven.reactor().enter();
    within(async {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = futures::join!(TcpStream::connect(addr), listener.accept());
        let mut client = client.unwrap();
        let (server, _) = accepted.unwrap();
        assert_eq!(driven.reactor().load().0, 3, "listener and two streams");
        let server = async { echo(server).await.unwrap() };
        let client = async {
            client.write_all(b"private").await.unwrap();
            client.close().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"private");
        };
        futures::join!(server, client);
    });
    assert_eq!(driven.reactor().load(), (0, 0), "everything deregistered");
}

/// A short read clears the read readiness (no `WouldBlock` system call before
/// the next wait): bursts that arrive later, from another thread, and the
/// end-of-file behind the last one must each still wake the reader, on the
/// stream and on its read half.
#[test]
fn reads_after_a_short_read_wait_for_the_next_burst_and_the_eof() {
    for split in [false, true] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let (mut peer, _) = listener.accept().unwrap();
            peer.set_nodelay(true).unwrap();
            for burst in 0..50u8 {
                peer.write_all(&[burst; 10]).unwrap();
                std::thread::sleep(Duration::from_millis(if burst % 10 == 0 { 20 } else { 1 }));
            }
            // Data and FIN together: the EOF must not be lost behind a short read.
            peer.write_all(b"last").unwrap();
        });
        let got = within(async {
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            if split {
                let (mut read, _write) = stream.split();
                loop {
                    match read.read(&mut buf).await.unwrap() {
                        0 => break,
                        n => got.extend_from_slice(&buf[..n]),
                    }
                }
            } else {
                let mut stream = stream;
                loop {
                    match stream.read(&mut buf).await.unwrap() {
                        0 => break,
                        n => got.extend_from_slice(&buf[..n]),
                    }
                }
            }
            got
        });
        writer.join().unwrap();
        let mut expected: Vec<u8> = (0..50u8).flat_map(|b| [b; 10]).collect();
        expected.extend_from_slice(b"last");
        assert_eq!(got, expected, "split: {split}");
    }
}
