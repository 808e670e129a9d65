//! Helpers shared by the reactor's integration tests.
#![allow(dead_code, unreachable_pub)] // each test file uses a subset

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::task::ArcWake;
use vedart_reactor::Reactor;

/// Generous bound on anything that must not hang; never a speed assertion.
pub const HANG: Duration = Duration::from_secs(10);

/// Runs `fut` to completion on this thread, failing the test if it takes
/// longer than [`HANG`] (the timeout uses the current reactor). The elapsed
/// time is checked too: a future that lost its wake-up may still complete when
/// the timeout's own wake-up re-polls it, and that must fail as well.
pub fn within<F: Future>(fut: F) -> F::Output {
    let start = Instant::now();
    let output = futures::executor::block_on(vedart_reactor::timeout(HANG, fut))
        .expect("the future did not finish within the hang bound");
    assert!(
        start.elapsed() < HANG,
        "the future only finished when the hang bound woke it (a lost wake-up)"
    );
    output
}

/// Waits (polling) until `cond` holds; false if [`HANG`] passes first.
pub fn wait_until(cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > HANG {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// A private reactor driven by a thread of the test's own, the way a runtime
/// worker drives one: `try_lock_driver()` then `turn(..)` in a loop.
pub struct DrivenReactor {
    reactor: Reactor,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DrivenReactor {
    pub fn new() -> DrivenReactor {
        DrivenReactor::start(Reactor::new().expect("create a reactor"))
    }

    /// Starts driving an existing reactor (for tests that prepare it first).
    pub fn start(reactor: Reactor) -> DrivenReactor {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let reactor = reactor.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("veda-test-driver".into())
                .spawn(move || {
                    let mut driver = reactor
                        .try_lock_driver()
                        .expect("the test thread is the only driver");
                    while !stop.load(Ordering::Acquire) {
                        driver.turn(None).expect("turn");
                    }
                })
                .expect("spawn the driver thread")
        };
        DrivenReactor {
            reactor,
            stop,
            thread: Some(thread),
        }
    }

    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }
}

impl Drop for DrivenReactor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.reactor.notify();
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            if !std::thread::panicking() {
                joined.expect("the driver thread panicked");
            }
        }
    }
}

/// A waker that counts its wake-ups.
#[derive(Default)]
pub struct CountingWaker {
    wakes: AtomicUsize,
}

impl CountingWaker {
    pub fn new() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        let waker = futures::task::waker(counter.clone());
        (counter, waker)
    }

    pub fn count(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl ArcWake for CountingWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Reads until EOF through a fixed buffer. (`read_to_end` re-zeroes its spare
/// capacity on every poll, which makes large transfers slow in debug builds.)
pub async fn read_all<R: futures::io::AsyncRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Vec<u8>> {
    use futures::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(got);
        }
        got.extend_from_slice(&buf[..n]);
    }
}
