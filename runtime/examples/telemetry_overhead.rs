//! Measures what telemetry costs the scheduler: the same workloads with
//! telemetry on and off, rounds interleaved, median and best of each.
//!
//! Usage: `cargo run --release -p vedart --example telemetry_overhead [-- ROUNDS WORKERS]`
//! (defaults: 40 rounds, 2 workers).

use std::time::{Duration, Instant};

use vedart::{Builder, Runtime, telemetry};

/// 10,000 spawns from inside a task, then awaits all of them.
fn spawn_many_local(rt: &Runtime) -> Duration {
    let start = Instant::now();
    rt.block_on(rt.spawn(async {
        let handles: Vec<_> = (0..10_000u64)
            .map(|i| vedart::spawn(async move { i }))
            .collect();
        let mut sum = 0;
        for handle in handles {
            sum += handle.await.expect("task");
        }
        assert_eq!(sum, 10_000 * 9_999 / 2);
    }))
    .expect("driver task");
    start.elapsed()
}

/// 200 tasks that each yield 1,000 times.
fn yield_many(rt: &Runtime) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..200)
        .map(|_| {
            rt.spawn(async {
                for _ in 0..1_000 {
                    vedart::yield_now().await;
                }
            })
        })
        .collect();
    rt.block_on(async {
        for handle in handles {
            handle.await.expect("task");
        }
    });
    start.elapsed()
}

/// 10,000 spawns from the main thread (outside the runtime), then awaits them.
fn spawn_many_remote(rt: &Runtime) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..10_000u64).map(|i| rt.spawn(async move { i })).collect();
    let sum = rt.block_on(async {
        let mut sum = 0;
        for handle in handles {
            sum += handle.await.expect("task");
        }
        sum
    });
    assert_eq!(sum, 10_000 * 9_999 / 2);
    start.elapsed()
}

/// A chain of 1,000 tasks, each spawning the next.
fn chained_spawn(rt: &Runtime) -> Duration {
    fn link(remaining: usize, done: std::sync::mpsc::Sender<()>) {
        if remaining == 0 {
            let _ = done.send(());
            return;
        }
        drop(vedart::spawn(async move { link(remaining - 1, done) }));
    }
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    drop(rt.spawn(async move { link(1_000, tx) }));
    rx.recv().expect("chain completes");
    start.elapsed()
}

/// 10,000 empty closures on the blocking pool, awaited.
fn spawn_blocking_many(rt: &Runtime) -> Duration {
    let start = Instant::now();
    let handle = rt.handle();
    rt.block_on(async move {
        let handles: Vec<_> = (0..10_000u64)
            .map(|i| handle.spawn_blocking(move || i))
            .collect();
        for handle in handles {
            handle.await.expect("closure");
        }
    });
    start.elapsed()
}

/// A workload: runs once, returns how long it took.
type Workload = fn(&Runtime) -> Duration;

fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[0])
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let rt = Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("runtime");
    println!("{workers} workers, {rounds} rounds each, on/off interleaved");
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "workload", "off med", "on med", "off best", "on best", "med", "best"
    );
    let workloads: [(&str, Workload); 5] = [
        ("spawn_many_local", spawn_many_local),
        ("yield_many", yield_many),
        ("spawn_many_remote", spawn_many_remote),
        ("chained_spawn", chained_spawn),
        ("spawn_blocking", spawn_blocking_many),
    ];
    for (name, run) in workloads {
        // Warm-up.
        run(&rt);
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for round in 0..2 * rounds {
            let enabled = round % 2 == 0;
            telemetry::set_enabled(enabled);
            let elapsed = run(&rt);
            if enabled {
                on.push(elapsed);
            } else {
                off.push(elapsed);
            }
        }
        telemetry::set_enabled(true);
        let ((on_med, on_best), (off_med, off_best)) = (summary(on), summary(off));
        let ms = |d: Duration| format!("{:.3}ms", d.as_secs_f64() * 1e3);
        println!(
            "{:<18} {:>10} {:>10} {:>10} {:>10} {:>8.3} {:>8.3}",
            name,
            ms(off_med),
            ms(on_med),
            ms(off_best),
            ms(on_best),
            on_med.as_secs_f64() / off_med.as_secs_f64(),
            on_best.as_secs_f64() / off_best.as_secs_f64(),
        );
    }
}
