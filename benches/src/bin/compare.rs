//! Runs every workload on vedart, tokio and smol alternately in one process and prints
//! `workload  vedart  tokio  smol  vedart/tokio`.
//!
//! Usage: `cargo run --release -p vedart-benches --bin compare [-- --rounds N --workers N
//! --only NAME[,NAME]]` (`--only` runs just the named workloads, e.g. under a profiler).
//! Each figure is the median of N rounds; the runtime order rotates every round so that none
//! always runs first (cold caches) or last. Memory per pending task is measured in a fresh child
//! process per runtime, because freed memory of an earlier runtime would hide the next one's growth.

use std::time::Duration;

use vedart_benches::process_pool;
use vedart_benches::runtimes::{Smol, Tokio, Veda};
use vedart_benches::{
    Bench, chained_spawn, memory_per_pending_task, ping_pong, spawn_many_local,
    spawn_many_remote_idle, time, timers, yield_many,
};

const TCP_CONNECTIONS: usize = 64;
const TCP_ROUND_TRIPS: usize = 500;
const PENDING_TASKS: usize = 100_000;

struct Options {
    rounds: usize,
    workers: usize,
    /// Workload names to run; all when empty.
    only: Vec<String>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        rounds: 15,
        workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|v: &usize| *v > 0)
                .ok_or_else(|| format!("{name} needs a positive integer"))
        };
        match arg.as_str() {
            "--rounds" => options.rounds = value("--rounds")?,
            "--workers" => options.workers = value("--workers")?,
            "--only" => {
                let names = args.next().ok_or("--only needs workload names")?;
                options.only = names.split(',').map(str::to_owned).collect();
            }
            "--memory-child" => {
                let name = args.next().unwrap_or_default();
                let workers = options.workers;
                let per_task = match name.as_str() {
                    "vedart" => memory_per_pending_task(&Veda::new(workers), PENDING_TASKS),
                    "tokio" => memory_per_pending_task(&Tokio::new(workers), PENDING_TASKS),
                    "smol" => memory_per_pending_task(&Smol::new(workers), PENDING_TASKS),
                    other => return Err(format!("unknown runtime {other:?}")),
                };
                println!("{per_task}");
                std::process::exit(0);
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --rounds N, --workers N, --only NAME[,NAME])"
                ));
            }
        }
    }
    Ok(options)
}

/// A workload run once on one runtime, returning the measured time.
type Run<B> = fn(&B) -> Duration;

struct Workload {
    name: &'static str,
    veda: Run<Veda>,
    tokio: Run<Tokio>,
    smol: Run<Smol>,
    /// Messages per run, for workloads reported as a rate.
    messages: Option<usize>,
}

macro_rules! workload {
    ($name:expr, |$rt:ident| $body:expr) => {
        workload!($name, None, |$rt| $body)
    };
    ($name:expr, $messages:expr, |$rt:ident| $body:expr) => {
        Workload {
            name: $name,
            veda: |$rt: &Veda| $body,
            tokio: |$rt: &Tokio| $body,
            smol: |$rt: &Smol| $body,
            messages: $messages,
        }
    };
}

fn workloads() -> Vec<Workload> {
    vec![
        workload!("spawn_many_local", |rt| time(|| spawn_many_local(
            rt, 10_000
        ))),
        workload!("spawn_many_remote_idle", |rt| time(|| {
            spawn_many_remote_idle(rt, 10_000)
        })),
        workload!("yield_many", |rt| time(|| yield_many(rt, 200, 1_000))),
        workload!("ping_pong", |rt| time(|| ping_pong(rt, 1_000))),
        workload!("chained_spawn", |rt| time(|| chained_spawn(rt, 1_000))),
        workload!("timers", |rt| time(|| timers(rt, 100_000))),
        workload!("tcp_echo", Some(TCP_CONNECTIONS * TCP_ROUND_TRIPS), |rt| rt
            .tcp_echo(TCP_CONNECTIONS, TCP_ROUND_TRIPS)),
        workload!("spawn_blocking", |rt| time(
            || rt.spawn_blocking_many(10_000)
        )),
    ]
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn format_time(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} us", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

fn memory_child(name: &str, workers: usize) -> Result<usize, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = std::process::Command::new(exe)
        .args(["--workers", &workers.to_string(), "--memory-child", name])
        .output()
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            format!(
                "memory child for {name} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// The process pool has no counterpart in tokio or smol: its figures are reported against the
/// targets of the executors issue instead.
fn process_pool_figures(rt: &vedart::Runtime) {
    let pool = process_pool::echo_pool(rt, 2);
    process_pool::round_trip(rt, &pool, 200);
    let round_trip = process_pool::round_trip(rt, &pool, 2_000);
    let throughput = process_pool::throughput(rt, &pool, 100_000);
    println!("\nprocess pool (2 echo children)          vedart        target");
    println!(
        "{:<34} {:>12} {:>13}",
        "round trip, 64-byte request (median)",
        format_time(round_trip),
        "<= 50 us"
    );
    println!(
        "{:<34} {:>12} {:>13}",
        "100,000 pipelined calls",
        format!("{throughput:.0}/s"),
        ">= 100000/s"
    );
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(process_pool::ECHO_WORKER_ARG) {
        if let Err(err) = process_pool::run_echo_worker() {
            eprintln!("echo worker: {err}");
            std::process::exit(1);
        }
        return;
    }
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("compare: {message}");
            std::process::exit(2);
        }
    };
    let veda = Veda::new(options.workers);
    let tokio = Tokio::new(options.workers);
    let smol = Smol::new(options.workers);
    println!(
        "{} worker threads, median of {} rounds, runtimes alternating\n",
        options.workers, options.rounds
    );
    println!(
        "{:<24} {:>14} {:>14} {:>14} {:>13}",
        "workload", "vedart", "tokio", "smol", "vedart/tokio"
    );
    let wanted = |name: &str| options.only.is_empty() || options.only.iter().any(|n| n == name);
    let known = workloads();
    if let Some(unknown) = options.only.iter().find(|name| {
        !known.iter().any(|w| w.name == *name)
            && !["memory_per_pending_task", "process_pool"].contains(&name.as_str())
    }) {
        eprintln!("compare: no workload named {unknown:?}");
        std::process::exit(2);
    }
    for workload in known.into_iter().filter(|w| wanted(w.name)) {
        let (mut v, mut t, mut s) = (Vec::new(), Vec::new(), Vec::new());
        // One untimed warm-up round each.
        (workload.veda)(&veda);
        (workload.tokio)(&tokio);
        (workload.smol)(&smol);
        for round in 0..options.rounds {
            for slot in 0..3 {
                match (round + slot) % 3 {
                    0 => v.push((workload.veda)(&veda)),
                    1 => t.push((workload.tokio)(&tokio)),
                    _ => s.push((workload.smol)(&smol)),
                }
            }
        }
        let (v, t, s) = (median(v), median(t), median(s));
        let ratio = v.as_secs_f64() / t.as_secs_f64();
        let show = |d: Duration| match workload.messages {
            Some(messages) => format!("{:.0} msg/s", messages as f64 / d.as_secs_f64()),
            None => format_time(d),
        };
        println!(
            "{:<24} {:>14} {:>14} {:>14} {:>13.2}",
            workload.name,
            show(v),
            show(t),
            show(s),
            ratio
        );
    }
    if wanted("memory_per_pending_task") {
        memory_figures(options.workers);
    }
    drop((tokio, smol));
    if wanted("process_pool") {
        process_pool_figures(&veda.rt);
    }
    if options.only.is_empty() {
        telemetry_overhead(&veda, options.rounds);
    }
}

/// Bytes per pending task in a child process per runtime (see `memory_child`).
fn memory_figures(workers: usize) {
    let memory: Vec<_> = ["vedart", "tokio", "smol"]
        .iter()
        .map(|name| memory_child(name, workers))
        .collect();
    match (&memory[0], &memory[1], &memory[2]) {
        (Ok(v), Ok(t), Ok(s)) => println!(
            "{:<24} {:>14} {:>14} {:>14} {:>13.2}",
            "memory_per_pending_task",
            format!("{v} B"),
            format!("{t} B"),
            format!("{s} B"),
            *v as f64 / (*t).max(1) as f64
        ),
        _ => eprintln!("memory_per_pending_task: {memory:?}"),
    }
}

/// vedart with telemetry on vs off, rounds interleaved, on the paths it
/// instruments most densely (the target: on costs at most 3% more than off).
fn telemetry_overhead(veda: &Veda, rounds: usize) {
    let runs: [(&str, Run<Veda>); 2] = [
        ("spawn_many_local", |rt| {
            time(|| spawn_many_local(rt, 10_000))
        }),
        ("yield_many", |rt| time(|| yield_many(rt, 200, 1_000))),
    ];
    println!(
        "\n{:<34} {:>12} {:>12} {:>8}",
        "telemetry_overhead (vedart)", "off", "on", "on/off"
    );
    for (name, run) in runs {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for round in 0..4 * rounds.max(5) {
            let enabled = round % 2 == 0;
            vedart::telemetry::set_enabled(enabled);
            let elapsed = run(veda);
            if enabled {
                on.push(elapsed)
            } else {
                off.push(elapsed)
            }
        }
        vedart::telemetry::set_enabled(true);
        let (on, off) = (median(on), median(off));
        println!(
            "{:<34} {:>12} {:>12} {:>8.3}",
            format!("telemetry_overhead {name}"),
            format_time(off),
            format_time(on),
            on.as_secs_f64() / off.as_secs_f64()
        );
    }
}
