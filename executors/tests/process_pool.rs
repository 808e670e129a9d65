//! Integration tests of `ProcessPool`, against the `vedart-test-worker` binary.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use vedart_executors::process::{
    BoxFuture, ProcessError, ProcessErrorKind, ProcessPool, ProcessPoolBuilder,
};

const WORKER: &str = env!("CARGO_BIN_EXE_vedart-test-worker");

fn builder() -> ProcessPoolBuilder {
    ProcessPool::builder(WORKER).grace_period(Duration::from_millis(200))
}

fn pool(workers: usize) -> ProcessPool {
    builder()
        .workers(workers)
        .build()
        .expect("the test worker starts")
}

/// Runs a future to completion, failing the test instead of hanging.
fn run<F: Future>(future: F) -> F::Output {
    block_on(async {
        vedart_reactor::timeout(Duration::from_secs(30), future)
            .await
            .expect("the test hung for 30 s")
    })
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8 answer")
}

async fn call(pool: &ProcessPool, request: &str) -> Result<String, ProcessError> {
    pool.call(request.as_bytes().to_vec()).await.map(text)
}

/// Polls `condition` every 10 ms for up to 10 s.
fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// The pid names no process any more: it was reaped (`kill(pid, 0)` says ESRCH).
fn reaped(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// The process is gone or a zombie (orphans are reaped by init, if at all).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn kill(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

#[test]
fn echo_and_uppercase_round_trip() {
    let pool = pool(1);
    run(async {
        assert_eq!(call(&pool, "echo hello").await.unwrap(), "hello");
        assert_eq!(call(&pool, "upper hello").await.unwrap(), "HELLO");
        assert_eq!(call(&pool, "echo ").await.unwrap(), "");
    });
}

#[test]
fn pipelined_calls_to_one_child_all_get_their_own_answer() {
    let pool = pool(1);
    let answers = run(futures::future::join_all(
        (0..2000).map(|i| pool.call(format!("echo {i}").into_bytes())),
    ));
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(text(answer.unwrap()), i.to_string());
    }
    let stats = pool.stats();
    assert_eq!(stats.calls_ok, 2000);
    assert_eq!(stats.spawned, 1);
    assert!(stats.bytes_sent > 2000 * 13 && stats.bytes_received > 2000 * 13);
}

#[test]
fn concurrent_calls_go_to_the_least_loaded_child() {
    let pool = pool(2);
    let (a, b) =
        run(async { futures::join!(call(&pool, "sleep-pid 200"), call(&pool, "sleep-pid 200")) });
    assert_ne!(a.unwrap(), b.unwrap(), "both calls went to one child");
}

#[test]
fn large_requests_and_answers_cross_the_pipes() {
    let pool = pool(1);
    let payload = "z".repeat(3 * 1024 * 1024);
    run(async {
        let answer = call(&pool, &format!("echo {payload}")).await.unwrap();
        assert_eq!(answer.len(), payload.len());
        let big = pool.call(b"big 5000000".to_vec()).await.unwrap();
        assert_eq!(big.len(), 5_000_000);
    });
}

#[test]
fn an_error_frame_is_a_remote_error_and_the_child_stays() {
    let pool = pool(1);
    let pid = pool.pids()[0];
    run(async {
        let err = pool.call(b"error boom".to_vec()).await.unwrap_err();
        assert_eq!(err.kind(), ProcessErrorKind::Remote);
        assert!(err.is_remote());
        assert_eq!(err.pid(), Some(pid));
        assert_eq!(err.remote_payload(), Some(&b"boom"[..]));
        assert_eq!(err.into_remote_payload().unwrap(), b"boom");
        assert_eq!(call(&pool, "echo still here").await.unwrap(), "still here");
    });
    assert_eq!(pool.pids(), vec![pid]);
}

#[test]
fn kill_9_of_a_busy_child_fails_its_call_promptly_and_it_is_replaced() {
    let pool = pool(1);
    let pid = pool.pids()[0];
    let (failed_at, killed_at, err) = run(async {
        let busy = async {
            let result = pool.call(b"sleep 20000".to_vec()).await;
            (result, Instant::now())
        };
        let killer = async {
            vedart_reactor::sleep(Duration::from_millis(100)).await;
            kill(pid, libc::SIGKILL);
            Instant::now()
        };
        let ((result, failed_at), killed_at) = futures::join!(busy, killer);
        (failed_at, killed_at, result.unwrap_err())
    });
    let detection = failed_at.saturating_duration_since(killed_at);
    println!("kill -9 detected after {detection:?}");
    assert!(detection < Duration::from_secs(2), "took {detection:?}");
    assert_eq!(err.kind(), ProcessErrorKind::WorkerDied);
    assert_eq!(err.pid(), Some(pid));
    assert_eq!(err.signal(), Some(libc::SIGKILL));
    assert!(reaped(pid));
    let next = run(call(&pool, "pid")).unwrap();
    assert_ne!(next, pid.to_string());
    assert!(wait_until(|| pool.stats().respawns == 1));
}

#[test]
fn a_crashing_child_reports_its_exit_code() {
    let pool = pool(1);
    run(async {
        let err = pool.call(b"exit 7".to_vec()).await.unwrap_err();
        assert_eq!(err.kind(), ProcessErrorKind::WorkerDied);
        assert_eq!(err.exit_code(), Some(7));
        assert_eq!(err.signal(), None);
        assert!(err.to_string().contains("exit code 7"), "{err}");
        let err = pool.call(b"abort".to_vec()).await.unwrap_err();
        assert_eq!(err.signal(), Some(libc::SIGABRT));
        let err = pool.call(b"signal 15".to_vec()).await.unwrap_err();
        assert_eq!(err.signal(), Some(libc::SIGTERM));
        assert_eq!(call(&pool, "echo alive").await.unwrap(), "alive");
    });
}

#[test]
fn worker_died_carries_the_last_stderr_lines() {
    let pool = pool(1);
    let err = run(pool.call(b"stderr 30 oops".to_vec())).unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::WorkerDied);
    assert_eq!(err.exit_code(), Some(3));
    let tail = err.stderr_tail();
    assert_eq!(tail.len(), 20, "{tail:?}");
    assert_eq!(tail.first().map(String::as_str), Some("oops 10"));
    assert_eq!(tail.last().map(String::as_str), Some("oops 29"));
    assert!(err.to_string().contains("oops 29"));
}

#[test]
fn a_crash_fails_the_call_that_ran_and_the_calls_queued_behind_it_are_sent_again() {
    let pool = pool(1);
    run(async {
        let mut calls: Vec<_> = (0..10)
            .map(|i| pool.call(format!("sleep {}", 10 + i).into_bytes()))
            .collect();
        calls.insert(3, pool.call(b"exit 9".to_vec()));
        let results = futures::future::join_all(calls).await;
        assert_eq!(results[3].as_ref().unwrap_err().exit_code(), Some(9));
        for (i, result) in results.iter().enumerate().filter(|(i, _)| *i != 3) {
            let answer = result.as_ref().map(Vec::as_slice);
            assert!(matches!(answer, Ok(b"slept")), "call {i}: {answer:?}");
        }
    });
}

/// A file in the temporary directory, removed when dropped, whose lines count
/// how many times requests ran.
struct Runs(std::path::PathBuf);

impl Runs {
    fn new(name: &str) -> Runs {
        let path =
            std::env::temp_dir().join(format!("vedart-process-pool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Runs(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }

    fn count(&self) -> usize {
        std::fs::read_to_string(&self.0).map_or(0, |text| text.lines().count())
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn cancelling_a_queued_call_never_interrupts_the_running_one() {
    let pool = pool(1);
    let pid = pool.pids()[0];
    let runs = Runs::new("queued-cancel");
    let answer = run(async {
        let mut running = pool.call(format!("append {} 300", runs.path()).into_bytes());
        assert!(futures::poll!(&mut running).is_pending());
        assert!(wait_until(|| runs.count() == 1));
        let mut queued = pool.call(b"sleep 20000".to_vec());
        assert!(futures::poll!(&mut queued).is_pending());
        drop(queued);
        running.await
    });
    assert_eq!(text(answer.unwrap()), "appended");
    assert_eq!(runs.count(), 1, "the running call was sent again");
    // The child took no new call, and was terminated when it reached the
    // cancelled request.
    assert!(wait_until(|| reaped(pid)), "the child lives on");
    assert_ne!(run(call(&pool, "pid")).unwrap(), pid.to_string());
}

#[test]
fn a_started_call_on_a_child_terminated_for_another_call_is_interrupted() {
    let pool = pool(1);
    let pid = pool.pids()[0];
    let runs = Runs::new("interrupted");
    let err = run(async {
        let mut background = pool.call(format!("bg-append {} 20000", runs.path()).into_bytes());
        assert!(futures::poll!(&mut background).is_pending());
        assert!(wait_until(|| runs.count() == 1));
        let mut other = pool.call(b"sleep-pid 20000".to_vec());
        assert!(futures::poll!(&mut other).is_pending());
        // Both are acknowledged: cancelling `other` must kill the child.
        vedart_reactor::sleep(Duration::from_millis(100)).await;
        drop(other);
        background.await.unwrap_err()
    });
    assert_eq!(err.kind(), ProcessErrorKind::Interrupted);
    assert_eq!(err.pid(), Some(pid));
    assert!(err.to_string().contains("at most once"), "{err}");
    assert_eq!(runs.count(), 1, "the interrupted call ran again");
}

#[test]
fn an_interrupted_call_with_retries_left_runs_again() {
    let pool = pool(1);
    let runs = Runs::new("retried");
    let answer = run(async {
        let mut background = pool
            .call(format!("bg-append {} 300", runs.path()).into_bytes())
            .retries(1);
        assert!(futures::poll!(&mut background).is_pending());
        assert!(wait_until(|| runs.count() == 1));
        let mut other = pool.call(b"sleep 20000".to_vec());
        assert!(futures::poll!(&mut other).is_pending());
        vedart_reactor::sleep(Duration::from_millis(100)).await;
        drop(other);
        background.await
    });
    assert_eq!(text(answer.unwrap()), "appended");
    assert_eq!(runs.count(), 2);
}

#[test]
fn a_crashing_call_runs_again_only_as_often_as_its_retries_allow() {
    let pool = pool(1);
    let once = Runs::new("crash-once");
    let err = run(pool.call(format!("append-exit {} 4", once.path()).into_bytes())).unwrap_err();
    assert_eq!(err.exit_code(), Some(4));
    assert_eq!(once.count(), 1);
    let thrice = Runs::new("crash-thrice");
    let err = run(pool
        .call(format!("append-exit {} 4", thrice.path()).into_bytes())
        .retries(2))
    .unwrap_err();
    assert_eq!(err.exit_code(), Some(4));
    assert_eq!(thrice.count(), 3);
    // The pool's default applies to every call.
    let retrying = builder().workers(1).retries(1).build().unwrap();
    let twice = Runs::new("crash-twice");
    let err =
        run(retrying.call(format!("append-exit {} 4", twice.path()).into_bytes())).unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::WorkerDied);
    assert_eq!(twice.count(), 2);
}

#[test]
fn an_answer_without_a_started_frame_is_a_protocol_error() {
    let pool = pool(1);
    let err = run(pool.call(b"no-start".to_vec())).unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::Protocol);
    assert!(err.to_string().contains("without a Started frame"), "{err}");
    assert_eq!(run(call(&pool, "echo fine")).unwrap(), "fine");
}

#[test]
fn garbage_on_stdout_is_a_protocol_error_and_the_child_is_replaced() {
    let pool = pool(1);
    let pid = pool.pids()[0];
    let err = run(pool.call(b"garbage".to_vec())).unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::Protocol);
    assert_eq!(err.pid(), Some(pid));
    assert!(wait_until(|| reaped(pid)));
    assert_ne!(run(call(&pool, "pid")).unwrap(), pid.to_string());
}

#[test]
fn an_oversized_answer_is_a_protocol_error() {
    let pool = pool(1);
    let err = run(pool.call(b"oversized".to_vec())).unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::Protocol);
    let frame = err.frame_error().expect("a frame error");
    assert_eq!(
        frame.kind(),
        vedart_executors::process::frame::FrameErrorKind::TooLarge
    );
    assert!(err.to_string().contains("Part"), "{err}");
}

#[test]
fn payloads_longer_than_a_frame_travel_in_parts_both_ways() {
    let pool = builder().workers(1).max_frame_size(1024).build().unwrap();
    let pid = pool.pids()[0];
    run(async {
        let big = pool.call(b"big 5000".to_vec()).await.unwrap();
        assert_eq!(big, vec![b'x'; 5000]);
        let long = format!("len {}", "y".repeat(5000));
        assert_eq!(call(&pool, &long).await.unwrap(), long.len().to_string());
        let echo = "z".repeat(3000);
        assert_eq!(call(&pool, &format!("echo {echo}")).await.unwrap(), echo);
        // A context longer than a frame is installed in parts too.
        let context = pool.context(vec![b'c'; 2500]).unwrap();
        let answer = pool
            .call_with(&context, format!("ctx {}", context.id()).into_bytes())
            .await
            .unwrap();
        assert_eq!(answer, vec![b'c'; 2500]);
    });
    assert_eq!(pool.pids(), vec![pid]);
}

#[test]
fn an_answer_over_the_maximum_message_size_fails_its_call_and_the_child_stays() {
    let pool = builder()
        .workers(1)
        .max_frame_size(1024)
        .max_message_size(4096)
        .build()
        .unwrap();
    let pid = pool.pids()[0];
    let err = run(pool.call(b"big 5000".to_vec())).unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::TooLarge);
    assert_eq!(err.size(), Some((5000, 4096)));
    assert_eq!(err.pid(), Some(pid));
    let text = err.to_string();
    assert!(
        text.contains("max_message_size") && text.contains("4096"),
        "{text}"
    );
    assert!(!text.contains("protocol"), "{text}");
    assert_eq!(run(call(&pool, "big 4000")).unwrap().len(), 4000);
    assert_eq!(pool.pids(), vec![pid]);
}

#[test]
fn an_answer_to_an_unknown_id_is_a_protocol_error() {
    let pool = pool(1);
    let err = run(pool.call(b"bad-id".to_vec())).unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::Protocol);
    assert!(err.to_string().contains("not in flight"), "{err}");
}

#[test]
fn a_request_over_the_maximum_message_size_fails_without_touching_a_child() {
    let pool = builder().workers(1).max_message_size(1024).build().unwrap();
    let pid = pool.pids()[0];
    let err = run(pool.call(vec![b'e'; 2000])).unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::TooLarge);
    assert_eq!(err.size(), Some((2000, 1024)));
    assert!(pool.context(vec![0; 1024]).is_err());
    assert_eq!(run(call(&pool, "pid")).unwrap(), pid.to_string());
}

#[test]
fn max_tasks_per_child_replaces_children() {
    let pool = builder().workers(1).max_tasks_per_child(2).build().unwrap();
    let pids: Vec<String> = run(async {
        let mut pids = Vec::new();
        for _ in 0..6 {
            pids.push(call(&pool, "pid").await.unwrap());
        }
        pids
    });
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[2], pids[3]);
    assert_eq!(pids[4], pids[5]);
    assert_ne!(pids[0], pids[2]);
    assert_ne!(pids[2], pids[4]);
    // Retired children exit on EOF and are reaped.
    for pid in &pids[..4] {
        let pid: u32 = pid.parse().unwrap();
        assert!(wait_until(|| reaped(pid)), "child {pid} was not reaped");
    }
    assert!(pool.stats().respawns >= 2);
}

#[test]
fn dropping_a_call_kills_its_child_and_the_pool_replaces_it() {
    let pool = pool(1);
    let pid = pool.pids()[0];
    run(async {
        let mut busy = pool.call(b"sleep 20000".to_vec());
        assert!(futures::poll!(&mut busy).is_pending());
        drop(busy);
    });
    assert!(wait_until(|| reaped(pid)), "the cancelled child lives on");
    assert_ne!(run(call(&pool, "pid")).unwrap(), pid.to_string());
}

#[test]
fn cancellation_escalates_to_sigkill_after_the_grace_period() {
    let pool = pool(1);
    let pid = pool.pids()[0];
    run(async {
        assert_eq!(call(&pool, "ignore-term").await.unwrap(), "ok");
        let mut busy = pool.call(b"sleep 20000".to_vec());
        assert!(futures::poll!(&mut busy).is_pending());
        drop(busy);
    });
    assert!(wait_until(|| reaped(pid)), "SIGKILL never came");
}

#[test]
fn a_cancel_handle_cancels_from_another_thread() {
    let pool = pool(1);
    let pid = pool.pids()[0];
    let busy = pool.call(b"sleep 20000".to_vec());
    let handle = busy.cancel_handle();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        handle.cancel();
    });
    let err = run(busy).unwrap_err();
    canceller.join().unwrap();
    assert_eq!(err.kind(), ProcessErrorKind::Cancelled);
    assert!(wait_until(|| reaped(pid)));
    assert_eq!(run(call(&pool, "echo next")).unwrap(), "next");
}

#[test]
fn calls_behind_a_cancelled_one_are_sent_again() {
    let pool = pool(1);
    let pid = pool.pids()[0];
    let answer = run(async {
        let mut busy = pool.call(b"sleep 20000".to_vec());
        let mut sibling = pool.call(b"echo sibling".to_vec());
        assert!(futures::poll!(&mut busy).is_pending());
        assert!(futures::poll!(&mut sibling).is_pending());
        drop(busy);
        sibling.await
    });
    assert_eq!(text(answer.unwrap()), "sibling");
    assert!(wait_until(|| reaped(pid)));
}

#[test]
fn dropping_a_call_whose_frame_was_never_written_keeps_the_child() {
    let pool = pool(1);
    let pid = pool.pids()[0];
    let big = format!("echo {}", "y".repeat(100_000));
    run(async {
        // The child sleeps while the big frames fill its stdin pipe: the last
        // one cannot have been written when it is dropped.
        let mut sleeper = pool.call(b"sleep 300".to_vec());
        assert!(futures::poll!(&mut sleeper).is_pending());
        let mut queued: Vec<_> = (0..4)
            .map(|_| pool.call(big.clone().into_bytes()))
            .collect();
        for call in &mut queued {
            assert!(futures::poll!(call).is_pending());
        }
        drop(queued.pop());
        assert_eq!(text(sleeper.await.unwrap()), "slept");
        for answer in futures::future::join_all(queued).await {
            assert_eq!(answer.unwrap().len(), 100_000);
        }
    });
    assert_eq!(pool.pids(), vec![pid]);
    assert_eq!(pool.stats().respawns, 0);
}

#[test]
fn dropping_the_pool_reaps_every_child() {
    let pool = pool(3);
    let pids = pool.pids();
    assert_eq!(pids.len(), 3);
    // One child busy, one ignoring SIGTERM (it gets SIGKILL after the grace).
    let busy = pool.call(b"sleep 20000".to_vec());
    run(async {
        assert_eq!(call(&pool, "ignore-term").await.unwrap(), "ok");
    });
    let waiter = std::thread::spawn(move || run(busy));
    drop(pool);
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} survived the pool"
        );
    }
    let err = waiter.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::PoolClosed);
}

#[test]
fn a_panicking_owner_leaves_no_children() {
    let (tx, rx) = mpsc::channel();
    let owner = std::thread::spawn(move || {
        let pool = pool(2);
        tx.send(pool.pids()).unwrap();
        panic!("the task that owns the pool panics (expected by the test)");
    });
    assert!(owner.join().is_err());
    for pid in rx.recv().unwrap() {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} survived"
        );
    }
}

#[test]
fn graceful_shutdown_finishes_calls_then_reaps() {
    let pool = pool(2);
    let pids = pool.pids();
    run(async {
        let mut slow = pool.call(b"sleep 200".to_vec());
        assert!(futures::poll!(&mut slow).is_pending());
        let shutdown = pool.shutdown();
        let late = pool.call(b"echo late".to_vec()).await.unwrap_err();
        assert_eq!(late.kind(), ProcessErrorKind::PoolClosed);
        let (answer, ()) = futures::join!(slow, shutdown);
        assert_eq!(text(answer.unwrap()), "slept");
    });
    for pid in pids {
        assert!(reaped(pid), "child {pid} was not reaped by shutdown");
    }
}

#[test]
fn an_idle_child_that_dies_is_replaced() {
    let pool = pool(1);
    let pid = pool.pids()[0];
    kill(pid, libc::SIGKILL);
    assert!(wait_until(|| pool
        .pids()
        .first()
        .is_some_and(|p| *p != pid)));
    assert!(reaped(pid));
    assert_eq!(run(call(&pool, "echo replaced")).unwrap(), "replaced");
}

#[test]
fn a_child_that_closes_stdout_is_killed_after_the_grace_period() {
    let pool = pool(1);
    let err = run(pool.call(b"close-stdout".to_vec())).unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::WorkerDied);
    assert_eq!(err.signal(), Some(libc::SIGKILL));
}

#[test]
fn a_dead_childs_own_children_are_killed_with_it() {
    let pool = pool(1);
    let worker = pool.pids()[0];
    let grandchild: u32 = run(call(&pool, "grandchild")).unwrap().parse().unwrap();
    assert!(!dead(grandchild));
    kill(worker, libc::SIGKILL);
    assert!(
        wait_until(|| dead(grandchild)),
        "the grandchild outlived its parent"
    );
}

#[test]
fn a_program_that_cannot_start_is_a_spawn_error() {
    let err = ProcessPool::builder("/nonexistent/vedart-worker")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::Spawn);
    let source = std::error::Error::source(&err).expect("the io error");
    let io = source.downcast_ref::<std::io::Error>().unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn a_child_that_dies_at_start_fails_calls_without_hanging() {
    let pool = builder()
        .workers(1)
        .env("VEDART_TEST_WORKER_EXIT_AT_START", "5")
        .build()
        .unwrap();
    run(async {
        for _ in 0..3 {
            let err = pool.call(b"echo never".to_vec()).await.unwrap_err();
            assert_eq!(err.kind(), ProcessErrorKind::WorkerDied);
            assert_eq!(err.exit_code(), Some(5));
            assert_eq!(err.stderr_tail(), ["exiting at start as asked"]);
        }
    });
}

#[test]
fn environment_arguments_and_working_directory_reach_the_children() {
    let dir = std::env::temp_dir().canonicalize().unwrap();
    let pool = builder()
        .workers(1)
        .args(["--flag", "value"])
        .env("VEDART_TEST_VAR", "set")
        .env_remove("HOME")
        .current_dir(&dir)
        .build()
        .unwrap();
    run(async {
        assert_eq!(call(&pool, "args").await.unwrap(), "--flag,value");
        assert_eq!(call(&pool, "env VEDART_TEST_VAR").await.unwrap(), "set");
        assert!(call(&pool, "env HOME").await.unwrap_err().is_remote());
        assert_eq!(call(&pool, "cwd").await.unwrap(), dir.display().to_string());
    });
    let cleared = builder()
        .workers(1)
        .env_clear()
        .env("ONLY", "this")
        .build()
        .unwrap();
    run(async {
        assert!(call(&cleared, "env PATH").await.unwrap_err().is_remote());
        assert_eq!(call(&cleared, "env ONLY").await.unwrap(), "this");
    });
}

#[test]
fn a_context_is_installed_once_per_child_and_released_on_drop() {
    let pool = pool(2);
    let context = pool.context(b"pickled function".to_vec()).unwrap();
    let request = format!("ctx {}", context.id());
    run(async {
        let answers = futures::future::join_all(
            (0..20).map(|_| pool.call_with(&context, request.clone().into_bytes())),
        )
        .await;
        for answer in answers {
            assert_eq!(answer.unwrap(), b"pickled function");
        }
        // Every child that ran a call has it exactly once.
        for reply in pool.broadcast(b"ctx-count".to_vec()).await {
            assert_eq!(text(reply.result.unwrap()), "1");
        }
    });
    // A replacement child gets the context before its first call with it.
    let victim = pool.pids()[0];
    kill(victim, libc::SIGKILL);
    assert!(wait_until(
        || !pool.pids().contains(&victim) && pool.pids().len() == 2
    ));
    run(async {
        let answers = futures::future::join_all(
            (0..20).map(|_| pool.call_with(&context, request.clone().into_bytes())),
        )
        .await;
        assert!(
            answers
                .into_iter()
                .all(|a| a.unwrap() == b"pickled function")
        );
    });
    drop(context);
    run(async {
        for reply in pool.broadcast(b"ctx-count".to_vec()).await {
            assert_eq!(text(reply.result.unwrap()), "0");
        }
    });
}

#[test]
fn broadcast_reaches_every_child() {
    let pool = pool(3);
    let mut pids = pool.pids();
    let replies = run(pool.broadcast(b"pid".to_vec()));
    assert_eq!(replies.len(), 3);
    let mut answered: Vec<u32> = replies
        .into_iter()
        .map(|reply| {
            let answered: u32 = text(reply.result.unwrap()).parse().unwrap();
            assert_eq!(answered, reply.pid);
            answered
        })
        .collect();
    answered.sort_unstable();
    pids.sort_unstable();
    assert_eq!(answered, pids);
}

#[test]
fn stats_describe_the_children() {
    let pool = pool(2);
    run(async {
        for _ in 0..5 {
            call(&pool, "echo x").await.unwrap();
        }
        let _ = call(&pool, "error x").await;
    });
    let stats = pool.stats();
    assert_eq!(stats.workers.len(), 2);
    assert_eq!(stats.spawned, 2);
    assert_eq!(stats.respawns, 0);
    assert_eq!(stats.calls_ok, 5);
    assert_eq!(stats.calls_failed, 1);
    assert_eq!(stats.workers.iter().map(|w| w.completed).sum::<u64>(), 6);
    assert!(stats.workers.iter().all(|w| w.in_flight == 0));
    let mut pids: Vec<u32> = stats.workers.iter().map(|w| w.pid).collect();
    pids.sort_unstable();
    let mut expected = pool.pids();
    expected.sort_unstable();
    assert_eq!(pids, expected);
}

#[test]
fn a_custom_spawner_drives_the_children() {
    let spawner = |future: BoxFuture| {
        std::thread::spawn(move || block_on(future));
    };
    let pool = builder().workers(2).spawner(spawner).build().unwrap();
    run(async {
        let answers = futures::future::join_all(
            (0..100).map(|i| pool.call(format!("echo {i}").into_bytes())),
        )
        .await;
        for (i, answer) in answers.into_iter().enumerate() {
            assert_eq!(text(answer.unwrap()), i.to_string());
        }
    });
    let pid = pool.pids()[0];
    kill(pid, libc::SIGKILL);
    assert!(wait_until(
        || pool.pids().len() == 2 && !pool.pids().contains(&pid)
    ));
}

#[test]
fn the_pool_and_its_futures_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ProcessPool>();
    check::<vedart_executors::process::Call>();
    check::<vedart_executors::process::Context>();
    check::<vedart_executors::process::CancelHandle>();
    check::<vedart_executors::process::Broadcast>();
    check::<vedart_executors::process::Shutdown>();
    check::<ProcessError>();
}

/// Not a test on its own: the child process of `parent_death_kills_children`.
#[test]
#[ignore = "helper process, run by parent_death_kills_children"]
fn pdeathsig_helper() {
    if std::env::var_os("VEDART_PDEATHSIG_HELPER").is_none() {
        return;
    }
    let pool = pool(2);
    let pids: Vec<String> = pool.pids().iter().map(u32::to_string).collect();
    println!("PIDS {}", pids.join(","));
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn parent_death_kills_children() {
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pdeathsig_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VEDART_PDEATHSIG_HELPER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(helper.stdout.take().unwrap());
    let pids: Vec<u32> = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            // libtest prints the test's name on the same line.
            line.split_once("PIDS ")
                .map(|(_, pids)| pids.split(',').map(|p| p.parse().unwrap()).collect())
        })
        .expect("the helper reports its children");
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|pid| !dead(*pid)));
    helper.kill().unwrap();
    helper.wait().unwrap();
    for pid in pids {
        assert!(wait_until(|| dead(pid)), "child {pid} outlived its parent");
    }
}

/// Python's multiprocessing forks the parent, pool object included: the copy
/// must neither use nor tear down the real parent's children.
#[test]
fn a_forked_copy_of_the_parent_leaves_the_pool_alone() {
    let pool = pool(2);
    let pids = pool.pids();
    // SAFETY: the child only runs code that takes no lock a vanished thread
    // could hold (a call that fails at once, a drop that returns at once) and
    // leaves with `_exit`.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        let call = block_on(pool.call(b"echo from the fork".to_vec()));
        let closed = matches!(call, Err(ref err) if err.kind() == ProcessErrorKind::PoolClosed);
        drop(pool);
        // SAFETY: _exit ends the forked copy without running destructors.
        unsafe { libc::_exit(if closed { 0 } else { 1 }) };
    }
    let mut status = 0;
    let finished = wait_until(|| {
        // SAFETY: polls the child forked above, writing into a valid int.
        unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) == child }
    });
    if !finished {
        // A copy that touched the pool's locks or pipes hangs: fail, do not hang.
        kill(child as u32, libc::SIGKILL);
        // SAFETY: reaps the child forked above.
        unsafe { libc::waitpid(child, &mut status, 0) };
        panic!("the forked copy hung using the pool");
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}"
    );
    assert_eq!(
        pool.pids(),
        pids,
        "the fork's drop touched the parent's children"
    );
    assert!(pids.iter().all(|pid| !dead(*pid)));
    assert_eq!(run(call(&pool, "echo parent")).unwrap(), "parent");
}

#[test]
fn a_call_past_its_timeout_times_out_and_only_its_child_is_replaced() {
    let pool = pool(2);
    let pids = pool.pids();
    let started = Instant::now();
    let (slow, other, behind) = run(async {
        // Both children are busy: the slow call on one, `other` on the other.
        let mut slow = pool
            .call(b"sleep-pid 20000".to_vec())
            .timeout(Duration::from_millis(300));
        assert!(futures::poll!(&mut slow).is_pending());
        let mut other = pool.call(b"sleep-pid 600".to_vec());
        assert!(futures::poll!(&mut other).is_pending());
        // Queued behind one of them: if behind the slow call, it never
        // started there and goes to another child.
        let behind = pool.call(b"sleep-pid 10".to_vec());
        futures::join!(slow, other, behind)
    });
    let err = slow.unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::TimedOut);
    assert!(err.is_timed_out());
    assert_eq!(err.timeout(), Some(Duration::from_millis(300)));
    let victim = err.pid().expect("a child had the request");
    assert!(pids.contains(&victim));
    assert!(err.to_string().contains("timed out after 300ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // The other child's call finished there, and the call queued behind the
    // slow one ran elsewhere.
    let other: u32 = text(other.unwrap()).parse().unwrap();
    assert_ne!(other, victim);
    let behind: u32 = text(behind.unwrap()).parse().unwrap();
    assert_ne!(behind, victim);
    assert!(
        wait_until(|| reaped(victim)),
        "the timed-out child lives on"
    );
    assert!(pool.pids().contains(&other));
}

#[test]
fn the_pools_call_timeout_applies_to_every_call_and_a_call_can_override_it() {
    let pool = builder()
        .workers(1)
        .call_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    run(async {
        assert_eq!(call(&pool, "echo quick").await.unwrap(), "quick");
        let err = pool.call(b"sleep 20000".to_vec()).await.unwrap_err();
        assert_eq!(err.kind(), ProcessErrorKind::TimedOut);
        let answer = pool
            .call(b"sleep 400".to_vec())
            .timeout(Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(answer, b"slept");
    });
}

#[test]
fn a_call_waiting_for_a_child_times_out_without_one() {
    // Children that die at start: the call never reaches one.
    let pool = builder()
        .workers(1)
        .env("VEDART_TEST_WORKER_EXIT_AT_START", "5")
        .build()
        .unwrap();
    let result = run(pool
        .call(b"echo never".to_vec())
        .timeout(Duration::from_millis(1)));
    // Either the timeout or the dead child wins, never a hang.
    let err = result.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ProcessErrorKind::TimedOut | ProcessErrorKind::WorkerDied
        ),
        "{err}"
    );
}
