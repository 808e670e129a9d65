//! A short tour of VedaRT's Rust runtime: a fan-out of tasks, a structured scope, timers, and a TCP
//! echo server with concurrent clients, printing what ran where and how long it took. Every time
//! printed is measured with a clock around the work it names.
//!
//! Run it with `make demo-rust` or `cargo run --release -p vedart --example demo`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};

fn worker_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned()
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

async fn fan_out() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let chunks: Vec<_> = (0..64u64)
        .map(|chunk| {
            vedart::spawn(async move {
                let range = chunk * 20_000..(chunk + 1) * 20_000;
                let primes = range.filter(|&n| is_prime(n)).count();
                (worker_name(), primes)
            })
        })
        .collect();
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    let mut primes = 0;
    for chunk in chunks {
        let (worker, count) = chunk.await?;
        *per_worker.entry(worker).or_default() += 1;
        primes += count;
    }
    println!(
        "fan-out: 64 tasks counted the primes below 1,280,000 (20,000 numbers each): \
         {primes} primes in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    for (worker, tasks) in per_worker {
        println!("  worker thread {worker} ran {tasks} of the 64 tasks");
    }
    Ok(())
}

async fn scoped_timers() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let finished = vedart::scope(|s| async move {
        let children: Vec<_> = (1..=10u64)
            .map(|i| {
                s.spawn(async move {
                    vedart::time::sleep(Duration::from_millis(10 * i)).await;
                    i
                })
            })
            .collect();
        let mut finished = 0;
        for child in children {
            // `None` would mean the scope was cancelled, which no child here causes.
            finished += usize::from(child.await.is_some());
        }
        finished
    })
    .await;
    println!(
        "scope: {finished} children slept 10, 20, .., 100 ms at once; the scope returned after \
         {:.1} ms (the longest sleep, not the 550 ms they add up to)",
        start.elapsed().as_secs_f64() * 1e3
    );
    let start = Instant::now();
    let limit = Duration::from_millis(20);
    let Err(elapsed) = vedart::time::timeout(limit, futures::future::pending::<()>()).await else {
        unreachable!("a pending future never completes");
    };
    println!(
        "timeout: a future that never completes, given {} ms: \"{elapsed}\" after {:.1} ms",
        limit.as_millis(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

async fn tcp_echo() -> Result<(), Box<dyn std::error::Error>> {
    const CLIENTS: usize = 32;
    const MESSAGES: usize = 1_000;
    let listener = vedart::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    println!("tcp: echo server listening on {addr}");
    let server = vedart::spawn(async move {
        for _ in 0..CLIENTS {
            let (mut stream, _) = listener.accept().await?;
            // Detached: each connection's echo loop ends when its client hangs up.
            drop(vedart::spawn(async move {
                let mut buf = [0u8; 64];
                while stream.read_exact(&mut buf).await.is_ok() {
                    if stream.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            }));
        }
        Ok::<_, std::io::Error>(())
    });
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            vedart::spawn(async move {
                let mut stream = vedart::net::TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let message = [id as u8; 64];
                let mut reply = [0u8; 64];
                for _ in 0..MESSAGES {
                    stream.write_all(&message).await?;
                    stream.read_exact(&mut reply).await?;
                    assert_eq!(reply, message, "echo returns what was sent");
                }
                Ok::<_, std::io::Error>(())
            })
        })
        .collect();
    for client in clients {
        client.await??;
    }
    server.await??;
    let elapsed = start.elapsed();
    let total = CLIENTS * MESSAGES;
    println!(
        "tcp: {CLIENTS} clients echoed {total} 64-byte messages in {:.1} ms ({:.0} messages/s)",
        elapsed.as_secs_f64() * 1e3,
        total as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

#[vedart::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("VedaRT demo: a runtime with one worker thread per core ({workers})\n");
    fan_out().await?;
    scoped_timers().await?;
    tcp_echo().await
}
