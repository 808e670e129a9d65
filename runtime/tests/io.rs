//! I/O inside the runtime: sockets register with the runtime's own reactor,
//! and readiness wakes tasks on both flavours.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use vedart::io::Async;
use vedart::net::{TcpListener, TcpStream, UdpSocket, UnixStream};
use vedart::{Builder, Handle, Runtime};

fn multi() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .expect("runtime")
}

fn current() -> Runtime {
    Builder::new_current_thread().build().expect("runtime")
}

/// 16 clients, each sending 50 messages of 64 bytes through an echo server.
fn tcp_echo(rt: &Runtime) {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (sources, _) = Handle::current().reactor().load();
        assert!(
            sources >= 1,
            "the listener registered with this runtime's reactor"
        );
        let server = vedart::spawn(async move {
            let mut echoers = Vec::new();
            for _ in 0..16 {
                let (mut stream, _) = listener.accept().await.expect("accept");
                echoers.push(vedart::spawn(async move {
                    let mut buf = [0u8; 64];
                    loop {
                        match stream.read(&mut buf).await.expect("read") {
                            0 => break,
                            n => stream.write_all(&buf[..n]).await.expect("write"),
                        }
                    }
                }));
            }
            for echoer in echoers {
                echoer.await.expect("echoer");
            }
        });
        let clients: Vec<_> = (0..16u8)
            .map(|client| {
                vedart::spawn(async move {
                    let mut stream = TcpStream::connect(addr).await.expect("connect");
                    stream.set_nodelay(true).expect("nodelay");
                    for round in 0..50u8 {
                        let message = [client ^ round; 64];
                        stream.write_all(&message).await.expect("send");
                        let mut reply = [0u8; 64];
                        stream.read_exact(&mut reply).await.expect("receive");
                        assert_eq!(reply, message);
                    }
                })
            })
            .collect();
        for client in clients {
            client.await.expect("client");
        }
        server.await.expect("server");
    });
}

#[test]
fn tcp_echo_multi_thread() {
    tcp_echo(&multi());
}

#[test]
fn tcp_echo_current_thread() {
    tcp_echo(&current());
}

#[test]
fn udp_echo_round_trip() {
    let rt = multi();
    rt.block_on(async {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let server_addr = server.local_addr().expect("addr");
        let echo = vedart::spawn(async move {
            let mut buf = [0u8; 128];
            for _ in 0..20 {
                let (n, from) = server.recv_from(&mut buf).await.expect("recv");
                server.send_to(&buf[..n], from).await.expect("send");
            }
        });
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client.connect(server_addr).expect("connect");
        for i in 0..20u8 {
            client.send(&[i; 32]).await.expect("send");
            let mut buf = [0u8; 128];
            let n = vedart::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                .await
                .expect("reply within 5 s")
                .expect("recv");
            assert_eq!(&buf[..n], &[i; 32]);
        }
        echo.await.expect("echo");
    });
}

#[test]
fn unix_socket_pair_across_tasks() {
    let rt = multi();
    rt.block_on(async {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        let reader = vedart::spawn(async move {
            let mut received = Vec::new();
            b.read_to_end(&mut received).await.expect("read");
            received
        });
        for chunk in 0..100u8 {
            a.write_all(&[chunk; 100]).await.expect("write");
        }
        drop(a);
        let received = reader.await.expect("reader");
        assert_eq!(received.len(), 10_000);
        assert!(
            received
                .chunks(100)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&b| b as usize == i))
        );
    });
}

#[test]
fn async_adapter_over_a_std_tcp_stream() {
    let rt = current();
    rt.block_on(async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let listener = Async::new(listener).expect("register");
        let server = vedart::spawn(async move {
            let (stream, _) = listener.read_with(|l| l.accept()).await.expect("accept");
            let mut stream = Async::new(stream).expect("register");
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).await.expect("read");
            stream.write_all(&buf).await.expect("write");
        });
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        let mut stream = Async::new(stream).expect("register");
        stream.write_all(b"hello").await.expect("write");
        let mut reply = [0u8; 5];
        stream.read_exact(&mut reply).await.expect("read");
        assert_eq!(&reply, b"hello");
        server.await.expect("server");
    });
}

#[test]
fn a_pipe_between_tasks() {
    let rt = multi();
    rt.block_on(async {
        let (mut reader, mut writer) = vedart::net::pipe().expect("pipe");
        let producer = vedart::spawn(async move {
            for i in 0..64u8 {
                writer.write_all(&[i; 1024]).await.expect("write");
            }
        });
        let mut total = Vec::new();
        let mut buf = [0u8; 4096];
        while total.len() < 64 * 1024 {
            let n = reader.read(&mut buf).await.expect("read");
            assert!(n > 0, "early end of pipe");
            total.extend_from_slice(&buf[..n]);
        }
        producer.await.expect("producer");
        assert!(
            total
                .chunks(1024)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&b| b as usize == i))
        );
    });
}
