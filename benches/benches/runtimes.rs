//! criterion benches of every workload on vedart, tokio and smol.
//! `cargo bench -p vedart-benches`; `make bench-rust` prints the side-by-side table instead.

use criterion::{Criterion, criterion_group, criterion_main};
use vedart_benches::runtimes::{Smol, Tokio, Veda};
use vedart_benches::{
    Bench, chained_spawn, ping_pong, spawn_many_local, spawn_many_remote_idle, timers, yield_many,
};

fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn bench_runtime<B: Bench>(c: &mut Criterion) {
    let rt = B::new(workers());
    let mut group = c.benchmark_group(B::NAME);
    group.sample_size(20);
    group.bench_function("spawn_many_local", |b| {
        b.iter(|| spawn_many_local(&rt, 10_000))
    });
    group.bench_function("spawn_many_remote_idle", |b| {
        b.iter(|| spawn_many_remote_idle(&rt, 10_000))
    });
    group.bench_function("yield_many", |b| b.iter(|| yield_many(&rt, 200, 1_000)));
    group.bench_function("ping_pong", |b| b.iter(|| ping_pong(&rt, 1_000)));
    group.bench_function("chained_spawn", |b| b.iter(|| chained_spawn(&rt, 1_000)));
    group.bench_function("timers", |b| b.iter(|| timers(&rt, 100_000)));
    group.bench_function("tcp_echo", |b| b.iter(|| rt.tcp_echo(64, 100)));
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_runtime::<Veda>(c);
    bench_runtime::<Tokio>(c);
    bench_runtime::<Smol>(c);
}

criterion_group!(runtime_benches, benches);
criterion_main!(runtime_benches);
