//! The README's small service (`examples/service.rs`): hyper on vedart, a
//! channel to the task that owns the count, and Ctrl+C (a real SIGINT to this
//! test process) for a graceful stop. Also checks that the README shows the
//! example as it is.
#![cfg(not(feature = "loom"))] // real sockets, threads and signals

use std::io::{Read, Write};
use std::time::Duration;

use vedart::net::TcpListener;

#[allow(dead_code)] // its `main`
#[path = "../examples/service.rs"]
mod service;

/// One HTTP/1.0 GET over a plain blocking socket: the body of the answer.
fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    body.to_owned()
}

#[test]
fn the_service_counts_visits_and_stops_on_ctrl_c() {
    let rt = vedart::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    let visits = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        // Listening for Ctrl+C starts when `ctrl_c()` is called, before any
        // SIGINT is sent.
        let server = vedart::spawn(service::serve(listener, vedart::signal::ctrl_c()));
        let bodies = vedart::spawn_blocking(move || {
            let bodies: Vec<String> = (0..3).map(|_| get(addr, "/hello")).collect();
            // SAFETY: kill(2) with our own pid and a signal this process handles.
            let sent = unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
            assert_eq!(sent, 0, "kill(SIGINT)");
            bodies
        })
        .await
        .expect("the client");
        assert_eq!(
            bodies,
            [
                "hello, visitor 1\n",
                "hello, visitor 2\n",
                "hello, visitor 3\n"
            ]
        );
        vedart::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("the service stopped within 20 s of Ctrl+C")
            .expect("the service task")
            .expect("the service")
    });
    assert_eq!(visits, 3);
}

#[test]
fn the_readme_shows_the_service_example_as_it_is() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../examples/service.rs");
    // The README's copy starts after the example's module docs.
    let code = example
        .split_once("\n\n")
        .map(|(_, code)| code)
        .expect("module docs, then code");
    assert!(
        readme.contains(code),
        "README.md's service example differs from runtime/examples/service.rs: copy it again"
    );
}
