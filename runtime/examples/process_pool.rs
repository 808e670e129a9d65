//! A process pool whose workers are this very program: started with
//! `--worker`, it serves typed requests with `vedart::process::serve`; started
//! plainly, it spawns four of itself and fans a prime count out to them.
//!
//! Run it with `cargo run --release -p vedart --example process_pool`.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use vedart::process::{TypedErrorKind, serve, typed};

/// What the parent asks a worker.
#[derive(Debug, Serialize, Deserialize)]
enum Job {
    /// Count the primes in `start..end`.
    CountPrimes { start: u64, end: u64 },
}

/// What a worker answers.
#[derive(Debug, Serialize, Deserialize)]
struct Counted {
    primes: u64,
    worker: u32,
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// The worker's side: one typed handler; `serve` returns at EOF, when the
/// pool retires this child.
fn worker() -> std::io::Result<()> {
    serve(typed(|job: Job| match job {
        Job::CountPrimes { start, end } if start > end => {
            Err(format!("an empty range {start}..{end}"))
        }
        Job::CountPrimes { start, end } => Ok(Counted {
            primes: (start..end).filter(|&n| is_prime(n)).count() as u64,
            worker: std::process::id(),
        }),
    }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("--worker") {
        return Ok(worker()?);
    }
    let rt = vedart::Runtime::new()?;
    let pool = rt
        .handle()
        .process_pool(std::env::current_exe()?)
        .arg("--worker")
        .workers(4)
        .build()?;
    rt.block_on(async {
        let start = Instant::now();
        let chunk = 50_000u64;
        let calls: Vec<_> = (0..40u64)
            .map(|i| {
                let job = Job::CountPrimes {
                    start: i * chunk,
                    end: (i + 1) * chunk,
                };
                vedart::spawn(pool.call_typed::<_, Counted>(&job))
            })
            .collect();
        let mut primes = 0;
        let mut workers = std::collections::BTreeMap::<u32, usize>::new();
        for call in calls {
            let counted = call.await??;
            primes += counted.primes;
            *workers.entry(counted.worker).or_default() += 1;
        }
        println!(
            "{primes} primes below {} in {:?}, chunks per worker process: {workers:?}",
            40 * chunk,
            start.elapsed()
        );
        assert_eq!(primes, 148_933, "the primes below two million");

        // A handler's error comes back typed; the worker stays.
        let err = pool
            .call_typed::<_, Counted>(&Job::CountPrimes { start: 9, end: 1 })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), TypedErrorKind::Handler);
        println!("a bad job: {err}");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    rt.block_on(pool.shutdown());
    Ok(())
}
