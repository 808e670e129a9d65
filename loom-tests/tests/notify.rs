//! vedart::sync::Notify (and the watch channel built on it): no wake-up is
//! lost whichever way a notification races a waiter's registration.
#![cfg(feature = "loom")]

use std::future::Future;
use std::task::{Context, Waker};

use loom::sync::Arc;
use loom::thread;
use vedart::sync::{Notify, watch};

#[test]
fn notify_one_racing_a_waiter_always_wakes_it() {
    loom::model(|| {
        let notify = Arc::new(Notify::new());
        let notifier = {
            let notify = notify.clone();
            thread::spawn(move || notify.notify_one())
        };
        // Before registration the permit is stored; after, the waiter is
        // chosen. A lost wake-up leaves this blocked: loom reports a deadlock.
        loom::future::block_on(notify.notified());
        notifier.join().expect("notifier");
    });
}

#[test]
fn notify_waiters_wakes_a_notified_created_before_it_even_if_not_yet_polled() {
    loom::model(|| {
        let notify = Arc::new(Notify::new());
        let notified = notify.notified();
        let notifier = {
            let notify = notify.clone();
            thread::spawn(move || notify.notify_waiters())
        };
        loom::future::block_on(notified);
        notifier.join().expect("notifier");
    });
}

#[test]
fn a_chosen_waiter_dropped_before_completing_passes_the_wake_up_on() {
    loom::model(|| {
        let notify = Arc::new(Notify::new());
        let mut first = Box::pin(notify.notified());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(first.as_mut().poll(&mut cx).is_pending()); // registered
        let notifier = {
            let notify = notify.clone();
            thread::spawn(move || notify.notify_one())
        };
        // Whether notify_one chose `first` before the drop or finds no waiter
        // after it, the next Notified gets the wake-up.
        drop(first);
        loom::future::block_on(notify.notified());
        notifier.join().expect("notifier");
    });
}

#[test]
fn a_watch_change_racing_changed_is_never_missed() {
    loom::model(|| {
        let (tx, mut rx) = watch::channel(0);
        let sender = thread::spawn(move || {
            tx.send(1).expect("a receiver exists");
            tx
        });
        loom::future::block_on(async {
            while *rx.borrow_and_update() != 1 {
                rx.changed().await.expect("the sender is alive");
            }
        });
        drop(sender.join().expect("sender"));
    });
}
