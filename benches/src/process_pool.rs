//! The process-pool workloads: an echo child speaking the pool's frame protocol, a round trip to
//! a warm child, and pipelined throughput.
//!
//! The child is the benchmark binary itself started with [`ECHO_WORKER_ARG`], so nothing else
//! needs building.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::time::{Duration, Instant};

use vedart::process::ProcessPool;
use vedart::process::frame::{FrameKind, HEADER_LEN, encode_header};

/// The argument that turns the benchmark binary into an echo child.
pub const ECHO_WORKER_ARG: &str = "--echo-worker";

/// Answers every request frame on stdin with a response carrying the same payload, until EOF.
pub fn run_echo_worker() -> io::Result<()> {
    let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let mut output = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut header = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    loop {
        if input.read_exact(&mut header).is_err() {
            return output.flush();
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let id = u64::from_le_bytes(header[4..12].try_into().expect("8 id bytes"));
        payload.resize(len, 0);
        input.read_exact(&mut payload)?;
        if FrameKind::from_byte(header[12]) != Some(FrameKind::Request) {
            continue;
        }
        // The protocol wants a Started frame before the work begins; an echo
        // has no effects to run twice, so it may leave with the answer.
        let started = encode_header(id, FrameKind::Started, 0).map_err(io::Error::other)?;
        output.write_all(&started)?;
        let reply = encode_header(id, FrameKind::Response, len).map_err(io::Error::other)?;
        output.write_all(&reply)?;
        output.write_all(&payload)?;
        // Answers are batched while more requests are already buffered.
        if input.buffer().is_empty() {
            output.flush()?;
        }
    }
}

/// A pool of `workers` echo children on `rt`.
pub fn echo_pool(rt: &vedart::Runtime, workers: usize) -> ProcessPool {
    let exe = std::env::current_exe().expect("benchmark binary path");
    rt.handle()
        .process_pool(exe)
        .arg(ECHO_WORKER_ARG)
        .workers(workers)
        .build()
        .expect("echo children start")
}

/// Median round trip of a 64-byte request to a warm child, over `samples` sequential calls.
pub fn round_trip(rt: &vedart::Runtime, pool: &ProcessPool, samples: usize) -> Duration {
    rt.block_on(async {
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = Instant::now();
            let reply = pool.call(vec![7u8; 64]).await.expect("echo call");
            times.push(start.elapsed());
            assert_eq!(reply.len(), 64);
        }
        times.sort();
        times[times.len() / 2]
    })
}

/// Calls per second with `calls` 64-byte requests in flight at once across the pool.
pub fn throughput(rt: &vedart::Runtime, pool: &ProcessPool, calls: usize) -> f64 {
    rt.block_on(async {
        let start = Instant::now();
        let replies = futures::future::join_all((0..calls).map(|_| pool.call(vec![7u8; 64]))).await;
        let elapsed = start.elapsed();
        for reply in replies {
            assert_eq!(reply.expect("echo call").len(), 64);
        }
        calls as f64 / elapsed.as_secs_f64()
    })
}
