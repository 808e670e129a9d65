//! Channel throughput: `vedart::sync::mpsc` against `tokio::sync::mpsc`,
//! 1,000,000 `u64` messages from 1 producer and from 8 producers to one
//! consumer, bounded (capacity 1,024) and unbounded.
//!
//! Usage: `cargo run --release -p vedart-benches --bin compare_channels [-- --rounds N
//! --workers N]` (`make bench-channels`). Each channel runs on its own runtime
//! (vedart's on vedart, tokio's on tokio, both with the same worker count), and
//! tokio's channel also on vedart's runtime, which isolates the channel from
//! the scheduler. Rounds alternate the order; figures are medians.

use std::time::Duration;

use vedart_benches::runtimes::{Tokio, Veda};
use vedart_benches::{Bench, Spawner, time};

const MESSAGES: usize = 1_000_000;
const CAPACITY: usize = 1_024;

/// One workload: `producers` tasks send `MESSAGES` in all; the consumer
/// (the `block_on` future) receives and sums them.
macro_rules! throughput {
    ($name:ident, $bounded:expr, $unbounded:expr, $send:ident) => {
        fn $name<B: Bench>(rt: &B, producers: usize, bounded: bool) -> Duration {
            let spawner = rt.spawner();
            time(|| {
                rt.block_on(async move {
                    let per_producer = MESSAGES / producers;
                    let expected: u64 = (0..(per_producer * producers) as u64).sum::<u64>();
                    let sum = if bounded {
                        let (tx, mut rx) = $bounded(CAPACITY);
                        for p in 0..producers {
                            let tx = tx.clone();
                            drop(spawner.spawn(async move {
                                let start = (p * per_producer) as u64;
                                for v in start..start + per_producer as u64 {
                                    $send!(tx, v);
                                }
                            }));
                        }
                        drop(tx);
                        let mut sum = 0u64;
                        while let Some(v) = rx.recv().await {
                            sum += v;
                        }
                        sum
                    } else {
                        let (tx, mut rx) = $unbounded();
                        for p in 0..producers {
                            let tx = tx.clone();
                            drop(spawner.spawn(async move {
                                let start = (p * per_producer) as u64;
                                for v in start..start + per_producer as u64 {
                                    tx.send(v).unwrap();
                                }
                            }));
                        }
                        drop(tx);
                        let mut sum = 0u64;
                        while let Some(v) = rx.recv().await {
                            sum += v;
                        }
                        sum
                    };
                    assert_eq!(sum, expected, "a message was lost");
                })
            })
        }
    };
}

macro_rules! send_await {
    ($tx:ident, $v:ident) => {
        $tx.send($v).await.unwrap()
    };
}

throughput!(
    vedart_mpsc,
    vedart::sync::mpsc::channel,
    vedart::sync::mpsc::unbounded_channel,
    send_await
);
throughput!(
    tokio_mpsc,
    tokio::sync::mpsc::channel,
    tokio::sync::mpsc::unbounded_channel,
    send_await
);

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let mut rounds = 7;
    let mut workers = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|v| *v > 0);
        match (arg.as_str(), value) {
            ("--rounds", Some(v)) => rounds = v,
            ("--workers", Some(v)) => workers = v,
            _ => {
                eprintln!(
                    "compare_channels: usage: [--rounds N] [--workers N] (positive integers)"
                );
                std::process::exit(2);
            }
        }
    }
    let veda = Veda::new(workers);
    let tokio = Tokio::new(workers);
    println!(
        "{MESSAGES} messages, {workers} worker threads, median of {rounds} rounds, alternating\n"
    );
    println!(
        "{:<26} {:>14} {:>14} {:>14} {:>13}",
        "workload", "vedart mpsc", "tokio mpsc", "tokio on veda", "vedart/tokio"
    );
    for (name, producers, bounded) in [
        ("bounded 1->1", 1, true),
        ("bounded 8->1", 8, true),
        ("unbounded 1->1", 1, false),
        ("unbounded 8->1", 8, false),
    ] {
        let (mut v, mut t, mut tv) = (Vec::new(), Vec::new(), Vec::new());
        vedart_mpsc(&veda, producers, bounded);
        tokio_mpsc(&tokio, producers, bounded);
        for round in 0..rounds {
            for slot in 0..3 {
                match (round + slot) % 3 {
                    0 => v.push(vedart_mpsc(&veda, producers, bounded)),
                    1 => t.push(tokio_mpsc(&tokio, producers, bounded)),
                    _ => tv.push(tokio_mpsc(&veda, producers, bounded)),
                }
            }
        }
        let (v, t, tv) = (median(v), median(t), median(tv));
        let rate = |d: Duration| format!("{:.1} M msg/s", MESSAGES as f64 / d.as_secs_f64() / 1e6);
        println!(
            "{:<26} {:>14} {:>14} {:>14} {:>13.2}",
            name,
            rate(v),
            rate(t),
            rate(tv),
            v.as_secs_f64() / t.as_secs_f64()
        );
    }
}
