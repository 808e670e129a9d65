//! Timers: ordering, never firing early, cancellation on drop, saturation,
//! `timeout`, `interval`, and cross-thread insertion.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::{CountingWaker, DrivenReactor, HANG, wait_until, within};
use futures::StreamExt;
use futures::executor::block_on;
use futures::task::{ArcWake, noop_waker};
use vedart_reactor::{MissedTickBehavior, Reactor, interval, sleep, sleep_until, timeout};

/// Records, when woken, which timer it belongs to and when.
struct Recorder {
    id: usize,
    log: Arc<Mutex<Vec<(usize, Instant)>>>,
}

impl ArcWake for Recorder {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self
            .log
            .lock()
            .unwrap()
            .push((arc_self.id, Instant::now()));
    }
}

fn poll_once<F: Future + Unpin>(fut: &mut F, waker: &std::task::Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

#[test]
fn timers_fire_in_deadline_order_and_never_early() {
    // Every timer is queued before the driver starts, so the order in which the
    // reactor wakes them is exactly the order it fires them in.
    let reactor = Reactor::new().unwrap();
    let _enter = reactor.enter();
    let base = Instant::now() + Duration::from_millis(30);
    // A fixed permutation of 0..40, so insertion order differs from deadline order.
    let offsets: Vec<u64> = (0..40u64).map(|i| (i * 17) % 40).collect();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut sleeps = Vec::new();
    for (id, offset) in offsets.iter().enumerate() {
        let mut sleep = sleep_until(base + Duration::from_millis(2 * offset));
        let waker = futures::task::waker(Arc::new(Recorder {
            id,
            log: log.clone(),
        }));
        assert!(poll_once(&mut sleep, &waker).is_pending());
        sleeps.push(sleep);
    }
    assert_eq!(reactor.load().1, offsets.len());

    let _driver = DrivenReactor::start(reactor.clone());
    assert!(
        wait_until(|| log.lock().unwrap().len() == offsets.len()),
        "every timer fires"
    );
    let log = log.lock().unwrap();
    let fired: Vec<u64> = log.iter().map(|&(id, _)| offsets[id]).collect();
    let mut sorted = fired.clone();
    sorted.sort_unstable();
    assert_eq!(fired, sorted, "timers fire in deadline order");
    for &(id, woken_at) in log.iter() {
        assert!(
            woken_at >= sleeps[id].deadline(),
            "timer {id} fired before its deadline"
        );
    }
    for sleep in &mut sleeps {
        assert!(poll_once(sleep, &noop_waker()).is_ready());
    }
    assert_eq!(reactor.load().1, 0, "fired timers leave the queue");
}

#[test]
fn sleep_never_completes_early() {
    for millis in [0, 1, 2, 5, 10, 25] {
        let duration = Duration::from_millis(millis);
        let start = Instant::now();
        within(sleep(duration));
        assert!(start.elapsed() >= duration, "sleep({millis} ms) woke early");
    }
}

#[test]
fn sleep_until_in_the_past_is_ready_at_once() {
    let mut past = sleep_until(Instant::now() - Duration::from_millis(5));
    assert!(poll_once(&mut past, &noop_waker()).is_ready());
}

#[test]
fn timeout_on_a_never_ready_future_is_elapsed() {
    let start = Instant::now();
    let limit = Duration::from_millis(50);
    let result = block_on(timeout(limit, futures::future::pending::<()>()));
    assert!(result.is_err());
    assert!(start.elapsed() >= limit, "timeout fired early");
    assert!(start.elapsed() < HANG, "timeout fired far too late");
    let err: std::io::Error = result.unwrap_err().into();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn timeout_returns_the_output_when_the_future_wins() {
    assert_eq!(block_on(timeout(HANG, async { 7 })), Ok(7));
    let slow_but_in_time = async {
        sleep(Duration::from_millis(10)).await;
        "done"
    };
    assert_eq!(block_on(timeout(HANG, slow_but_in_time)), Ok("done"));
    // A future that is ready wins even against a zero timeout.
    assert_eq!(block_on(timeout(Duration::ZERO, async { 1 })), Ok(1));
}

#[test]
fn dropping_a_sleep_cancels_its_timer() {
    let reactor = Reactor::new().unwrap();
    let _enter = reactor.enter();
    let waker = noop_waker();

    let mut one = sleep(Duration::from_secs(3600));
    assert!(poll_once(&mut one, &waker).is_pending());
    assert_eq!(reactor.load().1, 1);
    drop(one);
    assert_eq!(reactor.load().1, 0);

    let mut many: Vec<_> = (0..1000)
        .map(|i| sleep(Duration::from_secs(60 + i)))
        .collect();
    for sleep in &mut many {
        assert!(poll_once(sleep, &waker).is_pending());
    }
    assert_eq!(reactor.load().1, 1000);
    // Re-polling replaces the waker in place; it adds no entry.
    for sleep in &mut many {
        assert!(poll_once(sleep, &waker).is_pending());
    }
    assert_eq!(reactor.load().1, 1000);
    many.truncate(10);
    assert_eq!(reactor.load().1, 10);
    drop(many);
    assert_eq!(reactor.load().1, 0);

    // A timeout whose future wins cancels its timer too.
    let mut guarded = timeout(Duration::from_secs(3600), futures::future::pending::<()>());
    assert!(
        Pin::new(&mut guarded)
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    assert_eq!(reactor.load().1, 1);
    drop(guarded);
    assert_eq!(reactor.load().1, 0);
    assert_eq!(reactor.next_timer_deadline(), None);
}

#[test]
fn duration_max_saturates_instead_of_panicking() {
    let forever = sleep(Duration::MAX);
    assert!(forever.deadline() > Instant::now() + Duration::from_secs(86_400 * 365));
    assert!(!forever.is_elapsed());

    assert_eq!(block_on(timeout(Duration::MAX, async { 5 })), Ok(5));
    assert_eq!(
        block_on(timeout(Duration::MAX, sleep(Duration::from_millis(5)))),
        Ok(())
    );
    assert!(block_on(timeout(Duration::from_millis(5), sleep(Duration::MAX))).is_err());

    // Pending for real, on a private reactor, then cancelled.
    let reactor = Reactor::new().unwrap();
    let _enter = reactor.enter();
    let mut forever = timeout(Duration::MAX, sleep(Duration::MAX));
    let waker = noop_waker();
    assert!(
        Pin::new(&mut forever)
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    assert_eq!(reactor.load().1, 2);
    drop(forever);
    assert_eq!(reactor.load().1, 0);
}

#[test]
fn interval_first_tick_is_immediate_and_ticks_stay_on_the_grid() {
    let period = Duration::from_millis(10);
    let mut ticks = interval(period);
    assert_eq!(ticks.period(), period);
    let start = Instant::now();
    let first = within(ticks.tick());
    assert!(first <= Instant::now());
    let mut previous = first;
    for k in 1..=5u32 {
        let tick = within(ticks.tick());
        assert!(Instant::now() >= tick, "a tick returned before its instant");
        assert!(tick > previous);
        previous = tick;
        // Unstalled, every behaviour keeps to the grid when it keeps up; allow
        // the load of a shared machine to push it only later, never earlier.
        assert!(tick >= first + period * k);
    }
    assert!(start.elapsed() >= period * 5);
}

#[test]
fn interval_burst_catches_up_on_missed_ticks() {
    let period = Duration::from_millis(20);
    let mut ticks = interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let t0 = within(ticks.tick());
    std::thread::sleep(period * 3 + period / 2);
    // The three missed ticks come back to back with their scheduled instants,
    // then the schedule continues on the original grid.
    for k in 1..=4u32 {
        let tick = within(ticks.tick());
        assert_eq!(tick, t0 + period * k);
        assert!(Instant::now() >= tick);
    }
}

#[test]
fn interval_delay_restarts_the_schedule_after_a_stall() {
    let period = Duration::from_millis(20);
    let mut ticks = interval(period);
    assert_eq!(
        MissedTickBehavior::default(),
        MissedTickBehavior::Delay,
        "Delay is the default"
    );
    let t0 = within(ticks.tick());
    std::thread::sleep(period * 3 + period / 2);
    let stall_end = Instant::now();
    // The late tick is delivered once, with its scheduled instant...
    assert_eq!(within(ticks.tick()), t0 + period);
    // ...and the next one comes a full period after it was delivered.
    let next = within(ticks.tick());
    assert!(next >= stall_end + period);
    let after = within(ticks.tick());
    // On time it is `next + period`; a loaded machine may only delay it further.
    assert!(after >= next + period);
}

#[test]
fn interval_skip_drops_missed_ticks_and_keeps_the_grid() {
    let period = Duration::from_millis(20);
    let mut ticks = interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let t0 = within(ticks.tick());
    std::thread::sleep(period * 3 + period / 2);
    let stall_end = Instant::now();
    assert_eq!(within(ticks.tick()), t0 + period);
    let next = within(ticks.tick());
    assert!(next >= stall_end, "missed ticks are skipped");
    let offset = next.duration_since(t0).as_nanos();
    assert_eq!(
        offset % period.as_nanos(),
        0,
        "the next tick stays on the grid"
    );
    assert!(offset / period.as_nanos() >= 4);
}

#[test]
fn interval_is_a_stream() {
    let ticks = interval(Duration::from_millis(2));
    let collected: Vec<Instant> = within(ticks.take(4).collect());
    assert_eq!(collected.len(), 4);
    assert!(collected.windows(2).all(|w| w[0] < w[1]));
}

#[test]
#[should_panic(expected = "interval period must be non-zero")]
fn interval_of_zero_panics() {
    let _ = interval(Duration::ZERO);
}

#[test]
fn a_timer_inserted_from_another_thread_wakes_a_blocked_driver() {
    // The driver blocks in `turn(None)` with nothing to wait for; a timer added
    // from this thread must interrupt it, or this test hangs.
    let driven = DrivenReactor::new();
    let _enter = driven.reactor().enter();
    std::thread::sleep(Duration::from_millis(20)); // let the driver block
    let start = Instant::now();
    let wait = Duration::from_millis(50);
    within(sleep(wait));
    assert!(start.elapsed() >= wait);
}

#[test]
fn an_earlier_timer_interrupts_a_driver_waiting_on_a_later_one() {
    let driven = DrivenReactor::new();
    let _enter = driven.reactor().enter();
    // The driver now sleeps until this far timer...
    let mut far = sleep(Duration::from_secs(3600));
    let (far_waker_count, far_waker) = CountingWaker::new();
    assert!(poll_once(&mut far, &far_waker).is_pending());
    std::thread::sleep(Duration::from_millis(20));
    // ...so a near one inserted now must cut that wait short.
    let start = Instant::now();
    let near = Duration::from_millis(30);
    within(sleep(near));
    assert!(start.elapsed() >= near);
    assert_eq!(far_waker_count.count(), 0, "the far timer has not fired");
    drop(far);
    assert_eq!(driven.reactor().load().1, 0);
}

#[test]
fn timers_from_many_threads_all_fire() {
    let driven = DrivenReactor::new();
    let reactor = driven.reactor().clone();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let reactor = reactor.clone();
            std::thread::spawn(move || {
                let _enter = reactor.enter();
                for i in 0..20u64 {
                    let wait = Duration::from_millis((t * 7 + i * 3) % 11);
                    let start = Instant::now();
                    within(sleep(wait));
                    assert!(start.elapsed() >= wait);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(reactor.load().1, 0);
}
