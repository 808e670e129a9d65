//! hyper 1.x on vedart (`--features hyper`): hyper's client against hyper's
//! server, both on vedart, over HTTP/1.1 keep-alive and HTTP/2; hyper's timers;
//! and `curl` against the example server (`examples/http.rs`).
#![cfg(not(feature = "loom"))] // real sockets and threads

use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use vedart::hyper::{HyperExecutor, HyperIo, HyperTimer};
use vedart::net::{TcpListener, TcpStream};

#[allow(dead_code)] // its `main`
#[path = "../examples/http.rs"]
mod example;

const REQUESTS: usize = 1000;

fn runtime() -> vedart::Runtime {
    vedart::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime")
}

/// Runs `future` on a two-worker runtime, failing the test instead of hanging.
fn run<F: Future>(future: F) -> F::Output {
    runtime().block_on(async {
        vedart::time::timeout(Duration::from_secs(60), future)
            .await
            .expect("the test hung for 60 s")
    })
}

/// Answers `hello <path>`.
async fn hello(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let text = format!("hello {}", request.uri().path());
    Ok(Response::new(Full::new(Bytes::from(text))))
}

/// Binds a listener and serves its connections with `serve`, counting them.
async fn server<F, Fut>(serve: F) -> (std::net::SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    drop(vedart::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let connection = serve(stream);
            drop(vedart::spawn(async move {
                if let Err(err) = connection.await {
                    eprintln!("server connection: {err}");
                }
            }));
        }
    }));
    (addr, connections)
}

#[test]
fn a_thousand_http1_requests_on_one_keep_alive_connection() {
    run(async {
        let (addr, connections) = server(|stream| {
            hyper::server::conn::http1::Builder::new()
                .timer(HyperTimer::new())
                .keep_alive(true)
                .serve_connection(HyperIo::new(stream), service_fn(hello))
        })
        .await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(HyperIo::new(stream))
            .await
            .unwrap();
        drop(vedart::spawn(connection));
        for i in 0..REQUESTS {
            sender.ready().await.unwrap();
            let request = Request::get(format!("/{i}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.version(), Version::HTTP_11);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, format!("hello /{i}"));
        }
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "one connection kept alive"
        );
    });
}

#[test]
fn a_thousand_concurrent_http2_requests_on_one_connection() {
    run(async {
        let (addr, connections) = server(|stream| {
            hyper::server::conn::http2::Builder::new(HyperExecutor::new())
                .timer(HyperTimer::new())
                .serve_connection(HyperIo::new(stream), service_fn(hello))
        })
        .await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http2::Builder::new(HyperExecutor::new())
            .timer(HyperTimer::new())
            .handshake(HyperIo::new(stream))
            .await
            .unwrap();
        drop(vedart::spawn(connection));
        // All in flight at once, multiplexed on the one connection.
        let responses = join_all((0..REQUESTS).map(|i| {
            let mut sender = sender.clone();
            async move {
                let request = Request::get(format!("http://{addr}/{i}"))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.version(), Version::HTTP_2);
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (i, body)
            }
        }))
        .await;
        for (i, body) in responses {
            assert_eq!(body, format!("hello /{i}"));
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1, "one connection");
    });
}

#[test]
fn hyper_timeouts_run_on_the_vedart_timer() {
    // A client that connects and says nothing: the header read timeout (a
    // HyperTimer sleep) closes the connection.
    run(async {
        let (addr, _) = server(|stream| {
            hyper::server::conn::http1::Builder::new()
                .timer(HyperTimer::new())
                .header_read_timeout(Duration::from_millis(200))
                .serve_connection(HyperIo::new(stream), service_fn(hello))
        })
        .await;
        let start = Instant::now();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        // hyper answers 408 (or just closes): either way, EOF comes.
        futures::AsyncReadExt::read_to_end(&mut stream, &mut buf)
            .await
            .unwrap();
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(200),
            "closed after {waited:?}"
        );
    });
}

/// Runs curl with `args`; `None` (and a message) when curl is not installed.
fn curl(args: &[&str]) -> Option<String> {
    let output = match Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => panic!("curl did not start: {err}"),
    };
    assert!(
        output.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).expect("utf-8"))
}

#[test]
fn curl_gets_answers_from_the_example_server() {
    let Some(version) = curl(&["--version"]) else {
        eprintln!("SKIPPED: curl is not installed (apt-get install curl)");
        return;
    };
    let rt = runtime();
    let listener = {
        let _enter = rt.enter();
        TcpListener::bind("127.0.0.1:0").unwrap()
    };
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = rt.spawn(example::serve(listener));

    assert_eq!(curl(&[&base]).unwrap(), "Hello, world!\n");
    let json = curl(&[&format!("{base}/json")]).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["runtime"], "vedart");
    assert_eq!(value["http"], "HTTP/1.1");

    let sum = curl(&["-d", "[1, 2, 3.5]", &format!("{base}/sum")]).unwrap();
    let value: serde_json::Value = serde_json::from_str(&sum).unwrap();
    assert_eq!(value["sum"], 6.5);
    assert_eq!(value["count"], 3);
    let status = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-d",
        "not json",
        &format!("{base}/sum"),
    ])
    .unwrap();
    assert_eq!(status, "400");

    // HTTP/2 with prior knowledge, and keep-alive across several URLs.
    if version.contains("HTTP2") {
        let json = curl(&["--http2-prior-knowledge", &format!("{base}/json")]).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["http"], "HTTP/2.0");
    } else {
        eprintln!("SKIPPED the HTTP/2 part: this curl has no HTTP2 feature");
    }
    let many = curl(&[&base, &base, &base]).unwrap();
    assert_eq!(many, "Hello, world!\n".repeat(3));

    server.abort();
}

/// A stream that is neither of vedart's sockets: `HyperIo` takes the generic
/// `AsyncRead` path (zeroed buffer) for it.
struct Wrapped(TcpStream);

impl futures::io::AsyncRead for Wrapped {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl futures::io::AsyncWrite for Wrapped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_close(cx)
    }
}

/// HTTP/1.1 over a Unix stream pair (read straight into hyper's buffer) and
/// over a wrapped TCP stream (the generic path), with a body larger than one
/// read.
#[test]
fn hyper_runs_over_unix_streams_and_any_async_stream() {
    async fn big(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let body = request.into_body().collect().await?.to_bytes();
        let mut answer = body.to_vec();
        answer.reverse();
        Ok(Response::new(Full::new(Bytes::from(answer))))
    }
    async fn exchange<S>(server: S, client: S)
    where
        S: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin + Send + 'static,
    {
        drop(vedart::spawn(
            hyper::server::conn::http1::Builder::new()
                .timer(HyperTimer::new())
                .serve_connection(HyperIo::new(server), service_fn(big)),
        ));
        let (mut sender, connection) = hyper::client::conn::http1::handshake(HyperIo::new(client))
            .await
            .unwrap();
        drop(vedart::spawn(connection));
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        for _ in 0..20 {
            sender.ready().await.unwrap();
            let request = Request::post("/")
                .body(Full::new(Bytes::from(payload.clone())))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let mut expected = payload.clone();
            expected.reverse();
            assert!(body == expected);
        }
    }
    run(async {
        let (server, client) = vedart::net::UnixStream::pair().unwrap();
        exchange(server, client).await;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = futures::join!(TcpStream::connect(addr), listener.accept());
        exchange(Wrapped(accepted.unwrap().0), Wrapped(client.unwrap())).await;
    });
}
