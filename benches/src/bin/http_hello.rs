//! The hello-world hyper server of `make bench-http`, on vedart or on tokio: the
//! same service and connection code, only the runtime and hyper's adapters differ
//! (`vedart::hyper::{HyperIo, HyperTimer}` or `hyper-util`'s `TokioIo`,
//! `TokioTimer`).
//!
//! Usage: `http_hello vedart|tokio ADDR [WORKERS]` (default 2 worker threads).
//! Prints `listening on ADDR` once it accepts, then serves until killed.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello, world!",
    ))))
}

fn http1() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true);
    builder
}

fn on_vedart(addr: &str, workers: usize) -> Result<(), Box<dyn std::error::Error>> {
    use vedart::hyper::{HyperIo, HyperTimer};
    let rt = vedart::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()?;
    let listener = {
        let _enter = rt.enter();
        vedart::net::TcpListener::bind(addr)?
    };
    println!("listening on {}", listener.local_addr()?);
    let accept = async move {
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            drop(vedart::spawn(async move {
                let service = service_fn(hello);
                let _ = http1()
                    .timer(HyperTimer::new())
                    .serve_connection(HyperIo::new(stream), service)
                    .await;
            }));
        }
    };
    Ok(rt.block_on(rt.spawn(accept_errors(accept)))??)
}

fn on_tokio(addr: &str, workers: usize) -> Result<(), Box<dyn std::error::Error>> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr))?;
    println!("listening on {}", listener.local_addr()?);
    let accept = async move {
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let service = service_fn(hello);
                let _ = http1()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    Ok(rt.block_on(rt.spawn(accept_errors(accept)))??)
}

/// Names the output of an accept loop, which ends only on an error.
async fn accept_errors(
    accept: impl std::future::Future<Output = std::io::Result<std::convert::Infallible>>,
) -> std::io::Result<()> {
    match accept.await? {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: http_hello vedart|tokio ADDR [WORKERS]";
    let (runtime, addr) = match &args[..] {
        [runtime, addr, ..] => (runtime.as_str(), addr.as_str()),
        _ => return Err(usage.into()),
    };
    let workers = match args.get(2) {
        Some(workers) => workers.parse().map_err(|_| usage)?,
        None => 2,
    };
    match runtime {
        "vedart" => on_vedart(addr, workers),
        "tokio" => on_tokio(addr, workers),
        _ => Err(usage.into()),
    }
}
