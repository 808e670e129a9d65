//! Workloads for comparing VedaRT with tokio and smol, shared by the criterion benches
//! (`benches/runtimes.rs`) and the side-by-side table (`src/bin/compare.rs`).
//!
//! Every workload is written once, generically over [`Bench`], so the three runtimes run exactly
//! the same code: the only differences are the runtime's own spawn, yield, timer and socket calls.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::{AsyncReadExt, AsyncWriteExt};

pub mod process_pool;
pub mod runtimes;

/// A runtime under test: what the workloads need from it.
pub trait Bench: Send + Sync + 'static {
    /// A handle that spawns onto the runtime from any thread.
    type Spawner: Spawner;
    /// Display name.
    const NAME: &'static str;
    /// Creates the runtime with `workers` worker threads.
    fn new(workers: usize) -> Self;
    /// A spawner for this runtime.
    fn spawner(&self) -> Self::Spawner;
    /// Runs a future to completion on the calling thread.
    fn block_on<F: Future>(&self, future: F) -> F::Output;
    /// Yields once to the scheduler.
    fn yield_now() -> impl Future<Output = ()> + Send;
    /// Sleeps for `duration` (only polled once by the timers workload).
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send;
    /// Runs the TCP echo workload with this runtime's own sockets.
    fn tcp_echo(&self, connections: usize, round_trips: usize) -> Duration;
    /// Runs `count` no-op closures on the runtime's blocking pool and awaits them all.
    fn spawn_blocking_many(&self, count: usize);
}

/// Spawns tasks onto a runtime.
pub trait Spawner: Clone + Send + Sync + 'static {
    /// The awaitable result of a spawned task.
    type Join<T: Send + 'static>: Future<Output = T> + Send + 'static;
    /// Spawns `future`.
    fn spawn<F>(&self, future: F) -> Self::Join<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;
}

/// 10,000 spawns from inside a task, then awaits all of them.
pub fn spawn_many_local<B: Bench>(rt: &B, tasks: usize) {
    let spawner = rt.spawner();
    rt.block_on(spawner.clone().spawn(async move {
        let handles: Vec<_> = (0..tasks)
            .map(|i| spawner.spawn(async move { i }))
            .collect();
        let mut sum = 0;
        for handle in handles {
            sum += handle.await;
        }
        assert_eq!(sum, tasks * (tasks - 1) / 2);
    }));
}

/// 10,000 spawns from a thread outside the runtime, then awaits all of them.
pub fn spawn_many_remote_idle<B: Bench>(rt: &B, tasks: usize) {
    let spawner = rt.spawner();
    let handles: Vec<_> = (0..tasks)
        .map(|i| spawner.spawn(async move { i }))
        .collect();
    let sum = rt.block_on(async move {
        let mut sum = 0;
        for handle in handles {
            sum += handle.await;
        }
        sum
    });
    assert_eq!(sum, tasks * (tasks - 1) / 2);
}

/// `tasks` tasks that each yield `yields` times.
pub fn yield_many<B: Bench>(rt: &B, tasks: usize, yields: usize) {
    let spawner = rt.spawner();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            spawner.spawn(async move {
                for _ in 0..yields {
                    B::yield_now().await;
                }
            })
        })
        .collect();
    rt.block_on(async move {
        for handle in handles {
            handle.await;
        }
    });
}

/// `pairs` pairs of tasks, each pair exchanging a ping and a pong through oneshot channels.
pub fn ping_pong<B: Bench>(rt: &B, pairs: usize) {
    let spawner = rt.spawner();
    let done = Arc::new(AtomicUsize::new(0));
    rt.block_on(spawner.clone().spawn({
        let done = done.clone();
        async move {
            let mut handles = Vec::with_capacity(pairs);
            for _ in 0..pairs {
                let inner = spawner.clone();
                let done = done.clone();
                handles.push(spawner.spawn(async move {
                    let (ping_tx, ping_rx) = oneshot::channel::<()>();
                    let (pong_tx, pong_rx) = oneshot::channel::<()>();
                    let ponger = inner.spawn(async move {
                        ping_rx.await.expect("ping sender alive");
                        pong_tx.send(()).expect("pong receiver alive");
                    });
                    ping_tx.send(()).expect("ping receiver alive");
                    pong_rx.await.expect("pong sender alive");
                    ponger.await;
                    done.fetch_add(1, Ordering::Relaxed);
                }));
            }
            for handle in handles {
                handle.await;
            }
        }
    }));
    assert_eq!(done.load(Ordering::Relaxed), pairs);
}

/// A chain of `length` tasks, each spawning the next; the last one reports back.
pub fn chained_spawn<B: Bench>(rt: &B, length: usize) {
    fn link<S: Spawner>(spawner: S, remaining: usize, done: oneshot::Sender<()>) {
        if remaining == 0 {
            let _ = done.send(());
            return;
        }
        let next = spawner.clone();
        drop(spawner.spawn(async move { link(next, remaining - 1, done) }));
    }
    let spawner = rt.spawner();
    rt.block_on(async move {
        let (tx, rx) = oneshot::channel();
        link(spawner, length, tx);
        rx.await.expect("chain completes");
    });
}

/// Creates `count` sleeps inside a task, polls each once, and drops them.
pub fn timers<B: Bench>(rt: &B, count: usize) {
    let spawner = rt.spawner();
    rt.block_on(spawner.spawn(async move {
        for i in 0..count {
            let mut sleep = std::pin::pin!(B::sleep(Duration::from_secs(60 + (i % 1000) as u64)));
            assert!(futures::poll!(sleep.as_mut()).is_pending());
        }
    }));
}

/// Runs the echo side of `tcp_echo`: reads 64-byte messages and writes them back until EOF.
pub async fn echo_loop<S: futures::AsyncRead + futures::AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = [0u8; 64];
    loop {
        match stream.read_exact(&mut buf).await {
            Ok(()) => stream.write_all(&buf).await.expect("echo write"),
            Err(_) => return,
        }
    }
}

/// Runs the client side of `tcp_echo`: `round_trips` 64-byte ping-pongs.
pub async fn ping_loop<S: futures::AsyncRead + futures::AsyncWrite + Unpin>(
    mut stream: S,
    round_trips: usize,
) {
    let message = [7u8; 64];
    let mut buf = [0u8; 64];
    for _ in 0..round_trips {
        stream.write_all(&message).await.expect("client write");
        stream.read_exact(&mut buf).await.expect("client read");
    }
}

/// Resident set size of this process, in bytes (Linux `/proc/self/statm`, in
/// pages of the size the OS reports).
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page_size).unwrap_or(4096)
}

/// Spawns `tasks` tasks that each wait on a channel, and returns the RSS growth per task.
///
/// What the figure holds, per task, identically for every runtime: the runtime's task
/// allocation (its header, the future: a `futures` oneshot receiver in a one-await state
/// machine) with the allocator's per-chunk overhead; the runtime's own idle-task bookkeeping
/// (vedart's registry of idle tasks, smol's slab of active tasks, tokio's intrusive list); the
/// oneshot channel (one 72-byte allocation, the same for all); and, in two vectors allocated
/// beforehand but first touched here, the sender (8 bytes) and the runtime's join handle as
/// the benchmark wraps it (`Spawner::Join`: vedart's and tokio's handles in a `Map` with a
/// function pointer, smol's task in a detach-on-drop guard). RSS is read in pages of the size
/// `sysconf(_SC_PAGESIZE)` reports, after the tasks reached their await point and the memory
/// of the spawning has settled.
pub fn memory_per_pending_task<B: Bench>(rt: &B, tasks: usize) -> usize {
    let spawner = rt.spawner();
    // Warm the runtime up so its fixed costs are not counted per task.
    rt.block_on(spawner.spawn(async {}));
    let before = rss_bytes();
    let mut senders = Vec::with_capacity(tasks);
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let (tx, rx) = oneshot::channel::<()>();
        senders.push(tx);
        handles.push(spawner.spawn(async move {
            let _ = rx.await;
        }));
    }
    // Let every task reach its await point.
    rt.block_on(async {
        for _ in 0..100 {
            B::yield_now().await;
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_bytes();
    drop(senders);
    rt.block_on(async move {
        for handle in handles {
            handle.await;
        }
    });
    after.saturating_sub(before) / tasks
}

/// Times one run of `work`.
pub fn time(work: impl FnOnce()) -> Duration {
    let start = Instant::now();
    work();
    start.elapsed()
}
