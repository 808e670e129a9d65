//! An HTTP server on vedart with hyper: hello-world on `/`, a small JSON API on
//! `/json` and `/sum`, HTTP/1.1 and HTTP/2 (prior knowledge) on one port.
//!
//! ```text
//! cargo run --release -p vedart --features hyper --example http -- 127.0.0.1:3000
//! curl http://127.0.0.1:3000/
//! curl --http2-prior-knowledge http://127.0.0.1:3000/json
//! curl -d '[1, 2, 3.5]' http://127.0.0.1:3000/sum
//! ```
//!
//! `tests/hyper.rs` runs this server (it includes this file) and points curl at it.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::server::conn::auto;
use vedart::hyper::{HyperExecutor, HyperIo, HyperTimer};
use vedart::net::TcpListener;

/// Answers one request.
async fn route(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => Response::new(Full::new(Bytes::from_static(b"Hello, world!\n"))),
        (&Method::GET, "/json") => json(
            StatusCode::OK,
            &serde_json::json!({
                "message": "Hello, world!",
                "runtime": "vedart",
                "http": format!("{:?}", request.version()),
            }),
        ),
        (&Method::POST, "/sum") => sum(request).await,
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": format!("no route for {}", request.uri().path()) }),
        ),
    })
}

/// `POST /sum` with a JSON array of numbers: answers their sum, or a 400
/// naming what was wrong.
async fn sum(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) => {
            let error = format!("reading the body failed: {err}");
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": error }),
            );
        }
    };
    match serde_json::from_slice::<Vec<f64>>(&body) {
        Ok(numbers) => json(
            StatusCode::OK,
            &serde_json::json!({ "count": numbers.len(), "sum": numbers.iter().sum::<f64>() }),
        ),
        Err(err) => json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": format!("expected a JSON array of numbers: {err}") }),
        ),
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("a valid header"),
    );
    response
}

/// Serves every connection of `listener`, each on a task of its own, until
/// accepting fails.
pub(crate) async fn serve(listener: TcpListener) -> std::io::Result<()> {
    // HTTP/1.1 or HTTP/2, by the connection's first bytes.
    let mut builder = auto::Builder::new(HyperExecutor::new());
    builder.http1().timer(HyperTimer::new());
    builder.http2().timer(HyperTimer::new());
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let builder = builder.clone();
        // Detached: the connection runs until the client goes.
        drop(vedart::spawn(async move {
            let connection = builder.serve_connection(HyperIo::new(stream), service_fn(route));
            if let Err(err) = connection.await {
                eprintln!("connection ended with an error: {err}");
            }
        }));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let rt = vedart::Runtime::new()?;
    rt.block_on(async {
        let listener = TcpListener::bind(addr.as_str())?;
        println!("listening on http://{}", listener.local_addr()?);
        serve(listener).await
    })?;
    Ok(())
}
