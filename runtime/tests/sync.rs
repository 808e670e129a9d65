//! vedart::sync: every primitive's semantics (close, lag, capacity,
//! cancellation) and stress from several threads, each under a watchdog.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vedart::sync::{Barrier, Mutex, Notify, RwLock, Semaphore, broadcast, mpsc, oneshot, watch};
use vedart::time::{sleep, timeout};

mod support;
use support::rt;

/// Runs `test` on a fresh runtime, failing instead of hanging after 20 s.
fn run<F: Future<Output = ()> + Send + 'static>(test: F) {
    rt().block_on(async {
        timeout(Duration::from_secs(20), test)
            .await
            .expect("watchdog: the test hung");
    });
}

/// Whether `future` is still pending after a short while.
async fn stays_pending<F: Future>(future: F) -> bool {
    timeout(Duration::from_millis(30), future).await.is_err()
}

#[test]
fn mpsc_delivers_in_order_then_none_when_every_sender_is_gone() {
    run(async {
        let (tx, mut rx) = mpsc::channel(4);
        let tx2 = tx.clone();
        let producer = vedart::spawn(async move {
            for i in 0..100 {
                tx.send(i).await.unwrap();
            }
        });
        for i in 0..100 {
            assert_eq!(rx.recv().await, Some(i));
        }
        assert!(stays_pending(rx.recv()).await, "a sender is still alive");
        drop(tx2);
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
        producer.await.unwrap();
    });
}

#[test]
fn mpsc_capacity_bounds_the_queue_and_send_waits_for_room() {
    run(async {
        let (tx, mut rx) = mpsc::channel(2);
        assert_eq!((tx.capacity(), tx.max_capacity()), (2, 2));
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.capacity(), 0);
        assert!(matches!(tx.try_send(3), Err(mpsc::TrySendError::Full(3))));
        assert!(stays_pending(tx.send(3)).await, "send must wait while full");
        assert_eq!(rx.recv().await, Some(1));
        tx.send(3).await.unwrap();
        assert_eq!(rx.len(), 2);
    });
}

#[test]
fn mpsc_receiver_close_fails_senders_and_still_drains() {
    run(async {
        let (tx, mut rx) = mpsc::channel(4);
        tx.send("queued").await.unwrap();
        let watcher = vedart::spawn({
            let tx = tx.clone();
            async move { tx.closed().await }
        });
        rx.close();
        assert!(tx.is_closed());
        assert_eq!(tx.send("late").await, Err(mpsc::SendError("late")));
        assert_eq!(rx.recv().await, Some("queued"));
        assert_eq!(rx.recv().await, None);
        watcher.await.unwrap();
    });
}

#[test]
fn mpsc_recv_is_cancellation_safe() {
    run(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let producer = vedart::spawn(async move {
            for i in 0..200u32 {
                tx.send(i).unwrap();
                if i % 4 == 0 {
                    sleep(Duration::from_millis(5)).await;
                }
            }
        });
        // Receives cut short by a timer take nothing: every message still
        // arrives exactly once, in order. (The producer's pauses are several
        // timer ticks longer than a receive's timeout, so that receives are
        // cut short whichever of two timers due at once wakes its task first.)
        let (mut got, mut cancelled) = (Vec::new(), 0);
        loop {
            match timeout(Duration::from_millis(1), rx.recv()).await {
                Ok(Some(i)) => got.push(i),
                Ok(None) => break,
                Err(_) => cancelled += 1,
            }
        }
        assert_eq!(got, (0..200).collect::<Vec<_>>());
        assert!(cancelled > 0, "no receive was cancelled");
        producer.await.unwrap();
    });
}

#[test]
fn mpsc_eight_producers_on_threads_lose_and_duplicate_nothing() {
    let (tx, mut rx) = mpsc::channel::<u64>(16);
    let producers: Vec<_> = (0..8u64)
        .map(|p| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..5_000 {
                    tx.blocking_send(p * 1_000_000 + i).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    run(async move {
        let mut next = [0u64; 8];
        let mut count = 0;
        while let Some(v) = rx.recv().await {
            let (p, i) = ((v / 1_000_000) as usize, v % 1_000_000);
            assert_eq!(i, next[p], "per-producer order");
            next[p] += 1;
            count += 1;
        }
        assert_eq!(count, 40_000);
    });
    for p in producers {
        p.join().unwrap();
    }
}

#[test]
fn unbounded_send_fails_once_the_receiver_is_gone() {
    let (tx, rx) = mpsc::unbounded_channel::<u8>();
    tx.send(1).unwrap();
    drop(rx);
    assert_eq!(tx.send(2), Err(mpsc::SendError(2)));
}

#[test]
fn oneshot_sends_once_and_reports_either_side_gone() {
    run(async {
        let (tx, rx) = oneshot::channel();
        let sender = vedart::spawn(async move { tx.send(7).unwrap() });
        assert_eq!(rx.await, Ok(7));
        sender.await.unwrap();

        let (tx, rx) = oneshot::channel::<u8>();
        drop(tx);
        assert_eq!(rx.await, Err(oneshot::RecvError));

        let (mut tx, rx) = oneshot::channel::<u8>();
        let closed = vedart::spawn(async move {
            tx.closed().await;
            tx.send(1)
        });
        drop(rx);
        assert_eq!(closed.await.unwrap(), Err(1));

        let (tx, mut rx) = oneshot::channel::<u8>();
        assert_eq!(rx.try_recv(), Err(oneshot::TryRecvError::Empty));
        // A receive cancelled by a timeout loses nothing.
        assert!(timeout(Duration::from_millis(5), &mut rx).await.is_err());
        tx.send(3).unwrap();
        assert_eq!((&mut rx).await, Ok(3));
    });
}

#[test]
fn broadcast_every_receiver_sees_every_value_and_laggers_are_told() {
    run(async {
        let (tx, mut a) = broadcast::channel(4);
        let mut b = tx.subscribe();
        for i in 0..4 {
            assert_eq!(tx.send(i), Ok(2));
        }
        for i in 0..4 {
            assert_eq!(a.recv().await, Ok(i));
        }
        // `b` read nothing; 3 more values push 0..3 out of the 4 slots.
        for i in 4..7 {
            tx.send(i).unwrap();
        }
        assert_eq!(b.recv().await, Err(broadcast::RecvError::Lagged(3)));
        for i in 3..7 {
            assert_eq!(b.recv().await, Ok(i));
        }
        // A late subscriber starts at the tail.
        let mut late = tx.subscribe();
        assert_eq!(late.try_recv(), Err(broadcast::TryRecvError::Empty));
        tx.send(7).unwrap();
        drop(tx);
        assert_eq!(late.recv().await, Ok(7));
        assert_eq!(late.recv().await, Err(broadcast::RecvError::Closed));
    });
}

#[test]
fn broadcast_send_fails_without_receivers_and_subscribe_reopens() {
    let (tx, rx) = broadcast::channel::<u8>(2);
    drop(rx);
    assert_eq!(tx.send(1), Err(broadcast::SendError(1)));
    let mut rx = tx.subscribe();
    assert_eq!(tx.send(2), Ok(1));
    assert_eq!(rx.try_recv(), Ok(2));
}

#[test]
fn broadcast_recv_is_cancellation_safe() {
    run(async {
        let (tx, mut rx) = broadcast::channel(8);
        assert!(stays_pending(rx.recv()).await);
        tx.send(1).unwrap();
        assert_eq!(rx.recv().await, Ok(1));
    });
}

#[test]
fn watch_receivers_see_the_latest_value_and_the_close() {
    run(async {
        let (tx, mut rx) = watch::channel(0);
        assert_eq!(rx.has_changed(), Ok(false));
        assert!(stays_pending(rx.changed()).await, "nothing changed yet");
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        rx.changed().await.unwrap();
        assert_eq!(
            *rx.borrow_and_update(),
            2,
            "intermediate values are skipped"
        );
        assert_eq!(rx.has_changed(), Ok(false));

        let mut waiter = rx.clone();
        let task = vedart::spawn(async move { *waiter.wait_for(|v| *v >= 10).await.unwrap() });
        for i in 3..=10 {
            tx.send(i).unwrap();
            vedart::yield_now().await;
        }
        assert_eq!(task.await.unwrap(), 10);

        tx.send_modify(|v| *v += 1);
        drop(tx);
        rx.changed().await.unwrap(); // the last change is reported before the close
        assert_eq!(*rx.borrow(), 11);
        assert_eq!(rx.changed().await, Err(watch::RecvError));
    });
}

#[test]
fn watch_send_without_receivers_fails_and_closed_wakes() {
    run(async {
        let (tx, rx) = watch::channel("a");
        let rx2 = rx.clone();
        assert_eq!(tx.receiver_count(), 2);
        drop(rx);
        assert!(stays_pending(tx.closed()).await);
        drop(rx2);
        tx.closed().await;
        assert_eq!(tx.send("b"), Err(watch::SendError("b")));
        assert_eq!(tx.send_replace("c"), "a");
        assert_eq!(*tx.subscribe().borrow(), "c");
    });
}

#[test]
fn mutex_serializes_increments_from_many_tasks_and_threads() {
    let counter = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let counter = counter.clone();
            std::thread::spawn(move || {
                for _ in 0..1_000 {
                    *counter.lock_blocking() += 1;
                }
            })
        })
        .collect();
    let in_tasks = counter.clone();
    run(async move {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let counter = in_tasks.clone();
                vedart::spawn(async move {
                    for _ in 0..1_000 {
                        let mut guard = counter.lock().await;
                        let read = *guard;
                        vedart::yield_now().await; // held across an await
                        *guard = read + 1;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(*counter.lock_blocking(), 12_000);
}

#[test]
fn rwlock_readers_share_and_a_writer_excludes() {
    run(async {
        let lock = Arc::new(RwLock::new(1));
        let r1 = lock.read().await;
        let r2 = lock.read().await;
        assert!(lock.try_write().is_none());
        assert!(stays_pending(lock.write()).await);
        drop((r1, r2));
        *lock.write().await += 1;
        assert_eq!(*lock.read_arc().await, 2);
    });
}

#[test]
fn semaphore_owned_permits_bound_concurrency() {
    run(async {
        let permits = Arc::new(Semaphore::new(3));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (permits, running, peak) = (permits.clone(), running.clone(), peak.clone());
                vedart::spawn(async move {
                    let _permit: vedart::sync::OwnedSemaphorePermit = permits.acquire_arc().await;
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    sleep(Duration::from_millis(2)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(permits.available_permits(), 3);
        // A cancelled acquire gives nothing away.
        let held: Vec<_> = (0..3).map(|_| permits.try_acquire().unwrap()).collect();
        assert!(stays_pending(permits.acquire()).await);
        drop(held);
        assert_eq!(permits.available_permits(), 3);
    });
}

#[test]
fn barrier_releases_all_at_once_with_one_leader() {
    run(async {
        let barrier = Arc::new(Barrier::new(5));
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let barrier = barrier.clone();
                vedart::spawn(async move { barrier.wait().await.is_leader() })
            })
            .collect();
        let mut leaders = 0;
        for task in tasks {
            leaders += task.await.unwrap() as usize;
        }
        assert_eq!(leaders, 1);
    });
}

#[test]
fn notify_one_stores_one_permit_and_notify_waiters_stores_none() {
    run(async {
        let notify = Notify::new();
        notify.notify_one();
        notify.notify_one(); // at most one permit
        notify.notified().await;
        assert!(stays_pending(notify.notified()).await);

        notify.notify_waiters();
        assert!(
            stays_pending(notify.notified()).await,
            "notify_waiters stores nothing"
        );

        // A Notified created before notify_waiters completes even if never polled before.
        let early = notify.notified();
        notify.notify_waiters();
        early.await;
    });
}

#[test]
fn notify_wakes_each_waiter_once_and_a_dropped_chosen_waiter_passes_it_on() {
    run(async {
        let notify = Arc::new(Notify::new());
        let woken = Arc::new(AtomicUsize::new(0));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (notify, woken) = (notify.clone(), woken.clone());
                vedart::spawn(async move {
                    notify.notified().await;
                    woken.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        sleep(Duration::from_millis(20)).await; // all four registered
        for _ in 0..4 {
            notify.notify_one();
        }
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(woken.load(Ordering::SeqCst), 4);

        // Cancellation: a Notified chosen by notify_one, then dropped, hands the
        // notification to the next waiter.
        let mut first = Box::pin(notify.notified());
        assert!(futures::poll!(first.as_mut()).is_pending());
        let mut second = Box::pin(notify.notified());
        assert!(futures::poll!(second.as_mut()).is_pending());
        notify.notify_one(); // chooses `first`
        drop(first);
        second.await;
    });
}

#[test]
fn unbounded_eight_producer_threads_lose_and_duplicate_nothing() {
    for _ in 0..5 {
        let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
        let producers: Vec<_> = (0..8u64)
            .map(|p| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        tx.send(p * 1_000_000 + i).unwrap();
                        if i % 1_000 == 0 {
                            std::thread::yield_now(); // let the consumer find it empty
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        run(async move {
            let mut next = [0u64; 8];
            let mut count = 0;
            while let Some(v) = rx.recv().await {
                let (p, i) = ((v / 1_000_000) as usize, v % 1_000_000);
                assert_eq!(i, next[p], "per-producer order");
                next[p] += 1;
                count += 1;
            }
            assert_eq!(count, 160_000);
        });
        for p in producers {
            p.join().unwrap();
        }
    }
}

#[test]
fn unbounded_waiting_receiver_wakes_on_the_last_sender_and_closed_on_the_receiver() {
    run(async {
        let (tx, mut rx) = mpsc::unbounded_channel::<u8>();
        let waiter = vedart::spawn(async move { rx.recv().await });
        sleep(Duration::from_millis(10)).await; // waiting
        let tx2 = tx.clone();
        drop(tx);
        assert!(!waiter.is_finished(), "a sender is still alive");
        drop(tx2);
        assert_eq!(waiter.await.unwrap(), None);

        let (tx, rx) = mpsc::unbounded_channel::<u8>();
        let watcher = vedart::spawn({
            let tx = tx.clone();
            async move { tx.closed().await }
        });
        sleep(Duration::from_millis(10)).await;
        assert!(!tx.is_closed());
        drop(rx);
        watcher.await.unwrap();
        assert!(tx.is_closed());
        assert!(tx.same_channel(&tx.clone()));
    });
}
