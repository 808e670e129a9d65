//! The child side of the pool as a library: `serve`, `serve_async` and the
//! typed layer, against the `vedart-serve-worker` binary built on them.
#![cfg(not(feature = "loom"))] // real processes and threads

use std::future::Future;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::executor::block_on;
use futures::future::join_all;
use vedart_executors::process::frame::{Frame, FrameDecoder, FrameKind, Message};
use vedart_executors::process::{
    Failure, FailureKind, ProcessErrorKind, ProcessPool, TypedErrorKind,
};

const WORKER: &str = env!("CARGO_BIN_EXE_vedart-serve-worker");

#[path = "../src/bin/vedart-serve-worker/jobs.rs"]
mod jobs;
use jobs::{Answer, Job};

fn pool(mode: &str, workers: usize) -> ProcessPool {
    ProcessPool::builder(WORKER)
        .arg(mode)
        .workers(workers)
        .grace_period(Duration::from_millis(200))
        .build()
        .expect("the serve worker starts")
}

/// Runs a future to completion, failing the test instead of hanging.
fn run<F: Future>(future: F) -> F::Output {
    block_on(async {
        vedart_reactor::timeout(Duration::from_secs(30), future)
            .await
            .expect("the test hung for 30 s")
    })
}

fn typed_round_trip(mode: &str) {
    let pool = pool(mode, 2);
    run(async {
        let sum: Answer = pool.call_typed(&Job::Add(40, 2)).await.unwrap();
        assert_eq!(sum, Answer::Sum(42));
        // Longer than a frame (the pool's default maximum is 256 MiB; this
        // pool's children get the default too): a 3 MiB value both ways.
        let bytes: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let echo: Answer = pool.call_typed(&Job::Echo(bytes.clone())).await.unwrap();
        assert_eq!(echo, Answer::Bytes(bytes));
        let overflow = pool
            .call_typed::<_, Answer>(&Job::Add(i64::MAX, 1))
            .await
            .unwrap_err();
        assert_eq!(overflow.kind(), TypedErrorKind::Handler);
        assert_eq!(
            overflow.message(),
            format!("{} + 1 overflows", i64::MAX),
            "{overflow}"
        );
    });
}

#[test]
fn typed_calls_round_trip_through_a_sync_worker() {
    typed_round_trip("sync");
}

#[test]
fn typed_calls_round_trip_through_an_async_worker() {
    typed_round_trip("async");
}

#[test]
fn long_messages_travel_in_part_frames_both_ways() {
    let pool = ProcessPool::builder(WORKER)
        .arg("async")
        .workers(1)
        .max_frame_size(1000)
        .build()
        .unwrap();
    let bytes: Vec<u8> = (0..100_000).map(|i| (i % 7) as u8).collect();
    let echo: Answer = run(pool.call_typed(&Job::Echo(bytes.clone()))).unwrap();
    assert_eq!(echo, Answer::Bytes(bytes));
}

fn panic_is_a_typed_error_and_the_worker_survives(mode: &str) {
    let pool = pool(mode, 1);
    run(async {
        let Answer::Pid(pid) = pool.call_typed(&Job::Pid).await.unwrap() else {
            panic!("a pid expected");
        };
        let err = pool
            .call_typed::<_, Answer>(&Job::Panic("the handler gave up".into()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), TypedErrorKind::Panicked, "{err}");
        assert!(err.is_panic());
        assert_eq!(err.message(), "the handler gave up");
        assert_eq!(err.process_error().and_then(|e| e.pid()), Some(pid));
        // The same child goes on serving.
        let again: Answer = pool.call_typed(&Job::Pid).await.unwrap();
        assert_eq!(again, Answer::Pid(pid));
        let sum: Answer = pool.call_typed(&Job::Add(1, 2)).await.unwrap();
        assert_eq!(sum, Answer::Sum(3));
    });
    assert_eq!(pool.stats().respawns, 0, "no child was replaced");
}

#[test]
fn a_panicking_sync_handler_answers_a_typed_error_and_its_worker_survives() {
    panic_is_a_typed_error_and_the_worker_survives("sync");
}

#[test]
fn a_panicking_async_handler_answers_a_typed_error_and_its_worker_survives() {
    panic_is_a_typed_error_and_the_worker_survives("async");
}

#[test]
fn pipelined_requests_to_one_sync_worker_are_all_answered() {
    let pool = pool("sync", 1);
    let answers = run(join_all(
        (0..500).map(|i| pool.call_typed::<_, Answer>(&Job::Add(i, i))),
    ));
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), Answer::Sum(2 * i as i64));
    }
}

#[test]
fn pipelined_requests_to_one_async_worker_run_concurrently() {
    // Each Rendezvous answers only once all eight arrived: one worker must be
    // running them at the same time.
    let pool = pool("async", 1);
    let answers = run(join_all(
        (0..8).map(|_| pool.call_typed::<_, Answer>(&Job::Rendezvous(8))),
    ));
    for answer in answers {
        assert_eq!(answer.unwrap(), Answer::Arrived(8));
    }
}

#[test]
fn handler_prints_do_not_reach_the_protocol_pipe() {
    for mode in ["sync", "async"] {
        let pool = pool(mode, 1);
        run(async {
            for _ in 0..3 {
                let len: Answer = pool
                    .call_typed(&Job::Print("hello from the handler".into()))
                    .await
                    .unwrap();
                assert_eq!(len, Answer::Len(22));
            }
            let sum: Answer = pool.call_typed(&Job::Add(2, 2)).await.unwrap();
            assert_eq!(sum, Answer::Sum(4));
        });
        assert_eq!(pool.stats().respawns, 0, "{mode}: no protocol error");
    }
}

#[test]
fn mismatched_types_are_typed_errors() {
    let pool = pool("sync", 1);
    run(async {
        // 200 is not a Job (postcard: a varint with its continuation bit set,
        // then nothing).
        let err = pool.call_typed::<_, Answer>(&200u8).await.unwrap_err();
        assert_eq!(err.kind(), TypedErrorKind::BadRequest, "{err}");
        assert!(err.message().contains("Job"), "{err}");
        // An answer read as the wrong type.
        let err = pool
            .call_typed::<_, (u64, u64, u64, u64)>(&Job::Pid)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), TypedErrorKind::Decode, "{err}");
        // The worker is fine.
        let sum: Answer = pool.call_typed(&Job::Add(1, 1)).await.unwrap();
        assert_eq!(sum, Answer::Sum(2));
    });
}

#[test]
fn pool_failures_are_process_errors() {
    let pool = pool("async", 1);
    let err = run(pool
        .call_typed::<_, Answer>(&Job::Rendezvous(2))
        .timeout(Duration::from_millis(100)))
    .unwrap_err();
    assert_eq!(err.kind(), TypedErrorKind::Process, "{err}");
    assert_eq!(
        err.process_error().map(|e| e.kind()),
        Some(ProcessErrorKind::TimedOut)
    );
}

#[test]
fn raw_handlers_see_contexts_and_answer_failures() {
    let pool = pool("raw", 2);
    run(async {
        let context = pool.context(b"shared bytes".to_vec()).unwrap();
        for _ in 0..4 {
            let answer = pool
                .call_with(&context, format!("ctx {}", context.id()))
                .await
                .unwrap();
            assert_eq!(answer, b"shared bytes");
        }
        let missing = pool.call(b"ctx 999999".to_vec()).await.unwrap_err();
        let failure = Failure::from_error(&missing).expect("a serve failure");
        assert_eq!(failure.kind(), FailureKind::Handler);
        assert_eq!(failure.message(), "no context 999999");
        let failed = pool.call(b"fail nope".to_vec()).await.unwrap_err();
        assert_eq!(Failure::from_error(&failed).unwrap().detail(), b"nope");
        let panicked = pool.call(b"panic raw boom".to_vec()).await.unwrap_err();
        let failure = Failure::from_error(&panicked).unwrap();
        assert_eq!(failure.kind(), FailureKind::Panicked);
        assert_eq!(failure.message(), "raw boom");
        assert_eq!(pool.call(b"echo".to_vec()).await.unwrap(), b"echo");
    });
}

/// Speaks to the worker by hand: a request and a print, then EOF. The worker
/// answers both, writes only frames on its stdout, and exits with status 0.
#[test]
fn a_worker_finishes_its_requests_and_exits_0_at_eof() {
    for mode in ["sync", "async"] {
        let mut child = Command::new(WORKER)
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut wire = Vec::new();
        for (id, job) in [(1, Job::Add(20, 22)), (2, Job::Print("stray".into()))] {
            Frame {
                id,
                kind: FrameKind::Request,
                payload: postcard::to_stdvec(&job).unwrap(),
            }
            .encode_into(&mut wire)
            .unwrap();
        }
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&wire).unwrap();
        drop(stdin); // EOF
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{mode}: exit {status:?}, stderr {err}");

        let mut decoder = FrameDecoder::new(1 << 20);
        let mut input = &out[..];
        let mut frames = Vec::new();
        while let Some(message) = decoder.decode_message(&mut input).unwrap() {
            let Message::Frame(frame) = message else {
                panic!("{message:?}");
            };
            frames.push(frame);
        }
        decoder.finish().expect("stdout holds whole frames only");
        // Each request: its Started frame, then its Response (an async worker
        // acknowledges both requests before running them).
        let kinds: Vec<_> = frames.iter().map(|f| (f.id, f.kind)).collect();
        assert_eq!(kinds.len(), 4, "{mode}: {kinds:?}");
        for id in [1, 2] {
            let at = |kind| kinds.iter().position(|&frame| frame == (id, kind));
            let (started, answered) = (at(FrameKind::Started), at(FrameKind::Response));
            assert!(
                started.is_some() && answered.is_some() && started < answered,
                "{mode}: {kinds:?}"
            );
        }
        let sum = frames
            .iter()
            .find(|f| (f.id, f.kind) == (1, FrameKind::Response))
            .unwrap();
        let sum: Answer = postcard::from_bytes(&sum.payload).unwrap();
        assert_eq!(sum, Answer::Sum(42));
        assert!(err.contains("stray\nand no newline"), "{mode}: {err}");
    }
}
