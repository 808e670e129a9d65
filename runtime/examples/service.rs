//! A complete small service on vedart alone: `#[vedart::main]`, a hyper HTTP
//! server, a channel to a task that owns the state, and Ctrl+C for a graceful
//! stop. The README shows it; `tests/service.rs` runs it.
//!
//! ```text
//! cargo run --release -p vedart --features hyper --example service -- 127.0.0.1:3000
//! curl http://127.0.0.1:3000/hello   # hello, visitor 1
//! curl http://127.0.0.1:3000/hello   # hello, visitor 2
//! # Ctrl+C: stops accepting, closes the connections, prints the total
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::io;

use bytes::Bytes;
use futures::future::{Either, select};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use vedart::hyper::{HyperIo, HyperTimer};
use vedart::net::TcpListener;
use vedart::sync::{mpsc, oneshot};
use vedart::task::JoinSet;

/// What request handlers ask the counter task, which owns the count.
enum Visit {
    /// A visit: answer its number.
    Count(oneshot::Sender<u64>),
}

/// Serves `listener` until `shutdown` completes; returns how many visits it
/// counted. An error of `shutdown` (say, Ctrl+C cannot be listened for) stops
/// the service too, and is returned.
pub(crate) async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = io::Result<()>>,
) -> io::Result<u64> {
    let (visits, mut inbox) = mpsc::channel::<Visit>(1024);
    let counter = vedart::spawn(async move {
        let mut count = 0;
        while let Some(Visit::Count(reply)) = inbox.recv().await {
            count += 1;
            let _ = reply.send(count); // the client may have gone
        }
        count
    });
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = match select(std::pin::pin!(listener.accept()), shutdown.as_mut()).await {
            Either::Left((accepted, _)) => accepted?,
            Either::Right((stopped, _)) => {
                stopped?;
                break;
            }
        };
        let visits = visits.clone();
        let service = service_fn(move |_: Request<hyper::body::Incoming>| {
            let visits = visits.clone();
            async move {
                let (reply, number) = oneshot::channel();
                let text = match visits.send(Visit::Count(reply)).await {
                    Ok(()) => format!("hello, visitor {}\n", number.await.unwrap_or(0)),
                    Err(_) => "shutting down\n".to_owned(),
                };
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
            }
        });
        connections.spawn(async move {
            let connection = http1::Builder::new()
                .timer(HyperTimer::new())
                .serve_connection(HyperIo::new(stream), service);
            if let Err(err) = connection.await {
                eprintln!("connection ended with an error: {err}");
            }
        });
    }
    // Stop every connection, then let the counter see its inbox close.
    connections.shutdown().await;
    drop(visits);
    counter.await.map_err(io::Error::from)
}

#[vedart::main]
async fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(addr.as_str())?;
    println!("listening on http://{}", listener.local_addr()?);
    let visits = serve(listener, vedart::signal::ctrl_c()).await?;
    println!("stopped after {visits} visits");
    Ok(())
}
