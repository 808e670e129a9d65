//! Measurements of the process pool (ignored by default; they assert only that
//! every answer is right, never a speed). Run them with
//!
//! ```text
//! cargo test --release -p vedart-executors --test process_measure -- --ignored --nocapture
//! ```
//!
//! The benches crate holds the formal benchmarks; these give quick figures for
//! issue notes: the round trip of a 64-byte request to a warm child (target
//! <= 50 us) and the throughput of 100,000 pipelined requests over 2 children
//! (target >= 100,000 calls/s).
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::time::{Duration, Instant};

use futures::executor::block_on;
use vedart_executors::process::ProcessPool;

const WORKER: &str = env!("CARGO_BIN_EXE_vedart-test-worker");

/// `echo ` + 59 bytes: a 64-byte request answered with 59 bytes.
fn request() -> Vec<u8> {
    let mut request = b"echo ".to_vec();
    request.resize(64, b'a');
    request
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture in release mode"]
fn round_trip_of_a_64_byte_request_to_a_warm_child() {
    let pool = ProcessPool::builder(WORKER).workers(1).build().unwrap();
    let request = request();
    block_on(async {
        for _ in 0..2_000 {
            assert_eq!(pool.call(request.clone()).await.unwrap().len(), 59);
        }
        let mut samples = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let start = Instant::now();
            let answer = pool.call(request.clone()).await.unwrap();
            samples.push(start.elapsed());
            assert_eq!(answer.len(), 59);
        }
        samples.sort_unstable();
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        println!(
            "round trip, 64-byte request, warm child: median {:?}, mean {:?}, p99 {:?}",
            samples[samples.len() / 2],
            mean,
            samples[samples.len() * 99 / 100]
        );
    });
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture in release mode"]
fn throughput_of_100k_pipelined_requests_over_2_children() {
    let pool = ProcessPool::builder(WORKER).workers(2).build().unwrap();
    let request = request();
    block_on(async {
        // Warm both children.
        let warm = futures::future::join_all((0..1_000).map(|_| pool.call(request.clone()))).await;
        assert!(warm.into_iter().all(|answer| answer.is_ok()));
        for round in 0..3 {
            let start = Instant::now();
            let answers =
                futures::future::join_all((0..100_000).map(|_| pool.call(request.clone()))).await;
            let elapsed = start.elapsed();
            assert!(
                answers
                    .into_iter()
                    .all(|answer| answer.unwrap().len() == 59)
            );
            println!(
                "throughput round {round}: 100,000 pipelined calls over 2 children in {elapsed:?}: {:.0} calls/s",
                100_000.0 / elapsed.as_secs_f64()
            );
        }
        let per_child: Vec<u64> = pool.stats().workers.iter().map(|w| w.completed).collect();
        println!("answers per child: {per_child:?}");
    });
}
