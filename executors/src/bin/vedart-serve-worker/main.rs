//! A worker for the `serve` tests (`tests/process_serve.rs`), built on
//! `vedart_executors::process::serve` like an application's worker would be.
//!
//! The first argument picks the handler:
//!
//! - `sync`: a typed synchronous handler of [`Job`]s ([`typed`] + [`serve`]);
//! - `async`: the same jobs as a typed async handler ([`typed_async`] +
//!   [`serve_async`]), whose `Rendezvous` jobs wait for each other (they only
//!   all finish when they run at the same time);
//! - `raw`: a byte handler: `ctx <id>` answers the context installed under
//!   `<id>`, `fail <text>` fails with `<text>`, `panic <text>` panics, anything
//!   else is echoed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vedart_executors::process::{Failure, Request, serve, serve_async, typed, typed_async};

mod jobs;
use jobs::{Answer, Job};

/// `Rendezvous` jobs that arrived so far.
static ARRIVED: AtomicU32 = AtomicU32::new(0);

fn run(job: Job) -> Result<Answer, String> {
    match job {
        Job::Add(a, b) => a
            .checked_add(b)
            .map(Answer::Sum)
            .ok_or_else(|| format!("{a} + {b} overflows")),
        Job::Echo(bytes) => Ok(Answer::Bytes(bytes)),
        Job::Fail(message) => Err(message),
        Job::Panic(message) => panic!("{message}"),
        Job::Pid => Ok(Answer::Pid(std::process::id())),
        Job::Print(text) => {
            println!("{text}");
            print!("and no newline");
            Ok(Answer::Len(text.len() as u64))
        }
        Job::Rendezvous(_) => Err("Rendezvous needs the async mode".into()),
    }
}

async fn rendezvous(count: u32) -> Result<Answer, String> {
    ARRIVED.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let arrived = ARRIVED.load(Ordering::SeqCst);
        if arrived >= count {
            return Ok(Answer::Arrived(arrived));
        }
        if Instant::now() > deadline {
            return Err(format!("only {arrived} of {count} arrived in 10 s"));
        }
        vedart_reactor::sleep(Duration::from_millis(1)).await;
    }
}

fn raw(request: Request) -> Result<Vec<u8>, Failure> {
    let text = String::from_utf8_lossy(request.payload()).into_owned();
    let (command, arg) = text.split_once(' ').unwrap_or((&text, ""));
    match command {
        "ctx" => {
            let id: u64 = arg.parse().map_err(|_| Failure::from("a bad context id"))?;
            match request.context(id) {
                Some(bytes) => Ok(bytes.to_vec()),
                None => Err(Failure::from(format!("no context {id}"))),
            }
        }
        "fail" => Err(Failure::from(arg)),
        "panic" => panic!("{arg}"),
        _ => Ok(request.into_payload()),
    }
}

fn main() -> std::io::Result<()> {
    match std::env::args().nth(1).unwrap_or_default().as_str() {
        "sync" => serve(typed(run)),
        "async" => futures::executor::block_on(serve_async(typed_async(|job: Job| async move {
            match job {
                Job::Rendezvous(count) => rendezvous(count).await,
                job => run(job),
            }
        }))),
        "raw" => serve(raw),
        other => {
            eprintln!("usage: vedart-serve-worker sync|async|raw (got {other:?})");
            std::process::exit(2);
        }
    }
}
