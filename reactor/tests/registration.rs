//! Readiness registration: waker replacement when a future moves between
//! tasks, several waiters on one direction, deregistration on drop, and
//! shutdown failing pending I/O instead of hanging.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

mod common;

use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{CountingWaker, DrivenReactor, wait_until, within};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::task::{ArcWake, noop_waker};
use vedart_reactor::{Async, Reactor, sleep};

fn poll_with<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

/// A connected pair on `reactor`, whose read side has seen `WouldBlock`, so the
/// next read-readiness future really waits for an event.
fn drained_pair(reactor: &Reactor) -> (Async<UnixStream>, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    let a = Async::with_reactor(a, reactor).unwrap();
    let mut buf = [0; 8];
    let mut read = Box::pin(a.read_with(|mut s| s.read(&mut buf)));
    assert!(poll_with(read.as_mut(), &noop_waker()).is_pending());
    drop(read);
    (a, b)
}

#[test]
fn a_readiness_future_moved_to_another_task_wakes_the_new_task() {
    let driven = DrivenReactor::new();
    let (a, mut b) = drained_pair(driven.reactor());
    let (count_a, waker_a) = CountingWaker::new();
    let (count_b, waker_b) = CountingWaker::new();

    let mut readable = Box::pin(a.readable());
    assert!(poll_with(readable.as_mut(), &waker_a).is_pending());
    // The future moves: task B polls it now.
    assert!(poll_with(readable.as_mut(), &waker_b).is_pending());
    b.write_all(b"x").unwrap();
    assert!(wait_until(|| count_b.count() > 0), "task B is woken");
    assert_eq!(count_a.count(), 0, "task A's stale waker is not used");
    assert!(matches!(
        poll_with(readable.as_mut(), &waker_b),
        Poll::Ready(Ok(()))
    ));
}

#[test]
fn poll_readable_keeps_the_last_callers_waker() {
    let driven = DrivenReactor::new();
    let (a, mut b) = drained_pair(driven.reactor());
    let (count_a, waker_a) = CountingWaker::new();
    let (count_b, waker_b) = CountingWaker::new();
    assert!(
        a.poll_readable(&mut Context::from_waker(&waker_a))
            .is_pending()
    );
    assert!(
        a.poll_readable(&mut Context::from_waker(&waker_b))
            .is_pending()
    );
    b.write_all(b"x").unwrap();
    assert!(wait_until(|| count_b.count() > 0));
    assert_eq!(count_a.count(), 0);
    assert!(
        a.poll_readable(&mut Context::from_waker(&waker_b))
            .is_ready()
    );
}

#[test]
fn a_future_moved_to_another_thread_completes_there() {
    let driven = DrivenReactor::new();
    let (a, mut b) = drained_pair(driven.reactor());
    let a = Arc::new(a);
    let mut fut = Box::pin({
        let a = a.clone();
        async move {
            let mut buf = [0; 4];
            let n = a.read_with(|mut s| s.read(&mut buf)).await?;
            std::io::Result::Ok(buf[..n].to_vec())
        }
    });
    // First polled here, by a task that then gives it away.
    let (count_here, waker_here) = CountingWaker::new();
    assert!(poll_with(fut.as_mut(), &waker_here).is_pending());
    let other = std::thread::spawn(move || within(fut));
    std::thread::sleep(Duration::from_millis(30)); // let the other thread poll it
    b.write_all(b"moved").unwrap();
    let got = other.join().unwrap().unwrap();
    assert_eq!(got, b"move");
    assert_eq!(count_here.count(), 0);
}

#[test]
fn every_future_waiting_on_a_direction_is_woken() {
    let driven = DrivenReactor::new();
    let (a, mut b) = drained_pair(driven.reactor());
    let (count_1, waker_1) = CountingWaker::new();
    let (count_2, waker_2) = CountingWaker::new();
    let mut first = Box::pin(a.readable());
    let mut second = Box::pin(a.readable());
    assert!(poll_with(first.as_mut(), &waker_1).is_pending());
    assert!(poll_with(second.as_mut(), &waker_2).is_pending());
    b.write_all(b"x").unwrap();
    assert!(wait_until(|| count_1.count() > 0 && count_2.count() > 0));
}

#[test]
fn dropping_one_waiter_leaves_the_others_registered() {
    // Regression: dropping a readiness future used to clear the direction's only
    // waker slot, which by then held another task's waker.
    let driven = DrivenReactor::new();
    let (a, mut b) = drained_pair(driven.reactor());
    let (_count_1, waker_1) = CountingWaker::new();
    let (count_2, waker_2) = CountingWaker::new();
    let mut first = Box::pin(a.readable());
    let mut second = Box::pin(a.readable());
    assert!(poll_with(first.as_mut(), &waker_1).is_pending());
    assert!(poll_with(second.as_mut(), &waker_2).is_pending());
    drop(first);
    b.write_all(b"x").unwrap();
    assert!(
        wait_until(|| count_2.count() > 0),
        "the remaining waiter is woken"
    );
}

#[test]
fn a_panicking_waker_does_not_stop_the_driver() {
    struct Panics;
    impl ArcWake for Panics {
        fn wake_by_ref(_: &Arc<Self>) {
            panic!("this waker panics on purpose");
        }
    }
    let driven = DrivenReactor::new();
    let (a, mut b) = drained_pair(driven.reactor());
    let bad = futures::task::waker(Arc::new(Panics));
    let mut readable = Box::pin(a.readable());
    assert!(poll_with(readable.as_mut(), &bad).is_pending());
    b.write_all(b"x").unwrap();
    drop(readable);
    // The driver survived the panic: I/O and timers still work through it.
    let _enter = driven.reactor().enter();
    let mut buf = [0; 1];
    within(a.read_with(|mut s| s.read(&mut buf))).unwrap();
    within(sleep(Duration::from_millis(5)));
}

#[test]
fn dropping_an_io_object_frees_its_slot() {
    let reactor = Reactor::new().unwrap();
    assert_eq!(reactor.load().0, 0);
    let mut objects: Vec<_> = (0..10)
        .map(|_| Async::with_reactor(UnixStream::pair().unwrap().0, &reactor).unwrap())
        .collect();
    assert_eq!(reactor.load().0, 10);
    objects.remove(3);
    objects.remove(7);
    assert_eq!(reactor.load().0, 8);
    // Freed slots are reused rather than the table growing.
    objects.push(Async::with_reactor(UnixStream::pair().unwrap().0, &reactor).unwrap());
    assert_eq!(reactor.load().0, 9);
    let inner = objects.pop().unwrap().into_inner().unwrap();
    assert_eq!(reactor.load().0, 8, "into_inner deregisters");
    drop(inner);
    drop(objects);
    assert_eq!(reactor.load().0, 0);

    // The typed sockets and pipes register with the entered reactor.
    let _enter = reactor.enter();
    let (reader, writer) = vedart_reactor::pipe().unwrap();
    let listener = vedart_reactor::TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(reactor.load().0, 3);
    drop((reader, writer, listener));
    assert_eq!(reactor.load().0, 0);
}

#[test]
fn a_reused_slot_serves_its_new_owner() {
    let driven = DrivenReactor::new();
    let _enter = driven.reactor().enter();
    for round in 0..50u8 {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        within(async {
            let reader = async {
                let mut buf = [0; 1];
                a.read_exact(&mut buf).await.unwrap();
                buf[0]
            };
            let writer = async {
                sleep(Duration::from_millis(1)).await;
                b.write_all(&[round]).await.unwrap();
            };
            let (got, ()) = futures::join!(reader, writer);
            assert_eq!(got, round);
        });
    }
    assert_eq!(driven.reactor().load(), (0, 0));
}

#[test]
fn shutdown_fails_pending_io_instead_of_hanging() {
    let driven = DrivenReactor::new();
    let reactor = driven.reactor().clone();
    let (a, _b) = drained_pair(&reactor);
    let a = Arc::new(a);
    let reader = {
        let a = a.clone();
        std::thread::spawn(move || {
            let mut buf = [0; 8];
            // The hang bound's timer lives on the global reactor, which does not
            // shut down here.
            within(a.read_with(|mut s| s.read(&mut buf)))
        })
    };
    let (timer_count, timer_waker) = CountingWaker::new();
    let mut timer = {
        let _enter = reactor.enter();
        Box::pin(sleep(Duration::from_secs(3600)))
    };
    assert!(poll_with(timer.as_mut(), &timer_waker).is_pending());

    std::thread::sleep(Duration::from_millis(30)); // let the reader wait
    reactor.shutdown();
    let err = reader.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("shut down"), "{err}");
    assert!(reactor.is_shut_down());
    assert!(timer_count.count() > 0, "pending timers are woken");
    assert_eq!(reactor.load(), (0, 0));
    // A woken timer completes instead of re-arming itself (which would spin
    // until its deadline), and so does a new one.
    assert!(poll_with(timer.as_mut(), &timer_waker).is_ready());
    let mut late = {
        let _enter = reactor.enter();
        Box::pin(sleep(Duration::from_secs(3600)))
    };
    let (late_count, late_waker) = CountingWaker::new();
    assert!(poll_with(late.as_mut(), &late_waker).is_ready());
    assert_eq!(late_count.count(), 0);
    assert_eq!(reactor.load(), (0, 0));

    // Existing objects fail from now on, and new ones are refused.
    let mut buf = [0; 8];
    let err = within(a.read_with(|mut s| s.read(&mut buf))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other);
    let refused = Async::with_reactor(UnixStream::pair().unwrap().0, &reactor);
    assert!(refused.is_err());
    reactor.shutdown(); // idempotent
}

#[test]
fn shutdown_wakes_waiters_even_without_a_driver() {
    let reactor = Reactor::new().unwrap();
    let (a, _b) = drained_pair(&reactor);
    let (count, waker) = CountingWaker::new();
    let mut readable = Box::pin(a.readable());
    assert!(poll_with(readable.as_mut(), &waker).is_pending());
    // `shutdown` wakes the waiters itself: nobody needs to turn the driver.
    reactor.shutdown();
    assert_eq!(count.count(), 1);
    assert!(matches!(
        poll_with(readable.as_mut(), &waker),
        Poll::Ready(Err(_))
    ));
}
