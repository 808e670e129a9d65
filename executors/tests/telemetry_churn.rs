//! Pool threads that come and go keep no telemetry memory behind them: each
//! exiting thread folds its counter block into the totals (issue 9, item 2).
//!
//! A test binary of its own: it measures the process's resident memory, which
//! other tests running beside it would disturb.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::sync::mpsc;

use vedart_executors::blocking::BlockingPool;
use vedart_executors::telemetry;

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("resident pages in /proc/self/statm");
    // SAFETY: `sysconf` with a valid name has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).expect("positive page size")
}

/// Starts one pool thread, has it run a job (which gives it a counter block
/// and histograms) and waits for it to exit.
fn churn_one_thread() {
    let pool = BlockingPool::builder()
        .max_workers(1)
        .build()
        .expect("valid bounds");
    let (tx, rx) = mpsc::channel();
    pool.execute(move || tx.send(()).expect("receiver waits"))
        .expect("pool accepts the job");
    rx.recv().expect("job ran");
    assert!(pool.shutdown(None), "the pool thread exits");
}

#[test]
fn exited_threads_leave_no_counter_blocks_behind() {
    telemetry::set_enabled(true);
    // Warm up the allocator, the thread-stack cache and the registries.
    for _ in 0..200 {
        churn_one_thread();
    }
    let jobs_before = telemetry::snapshot().blocking_tasks().completed;
    let before = rss_bytes();
    // No snapshot in between: folding must not wait for one.
    for _ in 0..1_000 {
        churn_one_thread();
    }
    let grown = rss_bytes().saturating_sub(before);
    let after = telemetry::snapshot();
    assert!(
        grown < 1 << 20,
        "1,000 thread churns grew RSS by {grown} bytes (a leaked block is ~4.5 KB)"
    );
    // What the exited threads counted is still in the totals.
    assert_eq!(after.blocking_tasks().completed - jobs_before, 1_000);
    assert!(after.blocking_run_time().count() >= 1_200);
}
