//! A process made by `fork()` after using the process pool, the global reactor
//! and telemetry can use them all (and so can its parent afterwards): the
//! `veda-process-spawn`, `veda-process` and `veda-reactor` threads and the
//! telemetry registries are made again, or kept free, in the child.
//!
//! The only test of this binary: the child of a fork must contain no other
//! test's threads.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use vedart_executors::process::ProcessPool;

const WORKER: &str = env!("CARGO_BIN_EXE_vedart-test-worker");

/// Builds a pool, calls it, sleeps on the global reactor, reads telemetry.
/// Returns which step failed.
fn use_everything() -> Result<(), &'static str> {
    let pool = ProcessPool::builder(WORKER)
        .workers(2)
        .build()
        .map_err(|_| "the pool did not start")?;
    let answer = block_on(async {
        vedart_reactor::timeout(Duration::from_secs(30), pool.call(b"echo hi".to_vec())).await
    });
    if !matches!(answer, Ok(Ok(bytes)) if bytes == b"hi") {
        return Err("the pool did not answer");
    }
    drop(pool);
    let started = Instant::now();
    block_on(vedart_reactor::sleep(Duration::from_millis(5)));
    if started.elapsed() < Duration::from_millis(5) {
        return Err("the timer fired early");
    }
    if vedart_executors::telemetry::snapshot()
        .process_pools()
        .spawned
        == 0
    {
        return Err("telemetry lost the pools");
    }
    Ok(())
}

/// Forks this many children; the first few use everything, the others read
/// telemetry (a child of a parent whose readers held a registry lock at the
/// moment of the fork used to wait for ever: about half of them did).
const FORKS: usize = 24;
const FULL_CHILDREN: usize = 3;

#[test]
fn a_child_forked_after_using_a_pool_and_the_global_reactor_uses_them() {
    use_everything().unwrap();
    // Other threads read telemetry (taking its registries' locks) all along.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = vedart_executors::telemetry::snapshot();
                }
            })
        })
        .collect();
    for fork in 0..FORKS {
        // SAFETY: the child runs only VedaRT code and `_exit`s; it never
        // returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: a watchdog: SIGALRM's default action ends a hung child.
            unsafe { libc::alarm(60) };
            let ok = if fork < FULL_CHILDREN {
                use_everything().is_ok()
            } else {
                vedart_executors::telemetry::snapshot()
                    .process_pools()
                    .spawned
                    > 0
            };
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert_eq!(wait(pid), Some(0), "forked child {fork} failed or hung");
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    use_everything().unwrap();
}

/// The child's exit code; `None` if it did not exit normally within 90 s.
fn wait(pid: libc::pid_t) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut status = 0;
    while Instant::now() < deadline {
        // SAFETY: `status` is a valid out-pointer; `pid` is our child.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        }
        thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: our unreaped child; then reap it.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
    None
}
