//! UDP: send_to / recv_from echo, connected send / recv, a socket shared by
//! several waiting tasks, and peeking.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::within;
use vedart_reactor::net::UdpSocket;

#[test]
fn send_to_recv_from_echo() {
    within(async {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server_addr = server.local_addr().unwrap();
        let echo = async {
            let mut buf = [0; 64];
            for _ in 0..10 {
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                server.send_to(&buf[..n], from).await.unwrap();
            }
        };
        let ping = async {
            let mut buf = [0; 64];
            for i in 0..10u8 {
                let msg = [i; 7];
                assert_eq!(client.send_to(&msg, server_addr).await.unwrap(), 7);
                let (n, from) = client.recv_from(&mut buf).await.unwrap();
                assert_eq!(from, server_addr);
                assert_eq!(&buf[..n], &msg);
            }
        };
        futures::join!(echo, ping);
    });
}

#[test]
fn connect_then_send_and_recv() {
    within(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
        a.send(b"hello").await.unwrap();
        let mut buf = [0; 16];
        let n = b.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        b.send(b"back").await.unwrap();
        let n = a.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"back");
    });
}

#[test]
fn send_without_connect_is_an_error() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = within(socket.send(b"x")).unwrap_err();
    // Linux says EDESTADDRREQ, other systems ENOTCONN: either way, not a hang.
    assert!(
        [Some(libc::EDESTADDRREQ), Some(libc::ENOTCONN)].contains(&err.raw_os_error()),
        "unexpected error {err:?}"
    );
}

#[test]
fn peek_from_leaves_the_datagram_queued() {
    within(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.send_to(b"peek", b.local_addr().unwrap()).await.unwrap();
        let mut buf = [0; 8];
        let (n, from) = b.peek_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"peek"[..], a.local_addr().unwrap()));
        let (n, _) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"peek");
    });
}

#[test]
fn several_tasks_can_wait_in_recv_from_on_one_socket() {
    // Two threads wait on the same socket before anything is sent; each of the
    // two datagrams must wake a waiter.
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
    let addr = socket.local_addr().unwrap();
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut buf = [0; 8];
                let (n, _) = within(socket.recv_from(&mut buf)).unwrap();
                buf[..n].to_vec()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50)); // let both start waiting
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    within(async {
        sender.send_to(b"one", addr).await.unwrap();
        sender.send_to(b"two", addr).await.unwrap();
    });
    let mut got: Vec<Vec<u8>> = receivers.into_iter().map(|t| t.join().unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn std_conversion_round_trip() {
    let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = std_socket.local_addr().unwrap();
    let socket = UdpSocket::try_from(std_socket).unwrap();
    assert_eq!(socket.local_addr().unwrap(), addr);
    socket.set_broadcast(true).unwrap();
    assert_eq!(socket.into_std().unwrap().local_addr().unwrap(), addr);
}
