//! The local run queue: the owner pushes (overflowing into the injector) and
//! pops while two other workers steal half. No task may be lost or taken twice.
#![cfg(feature = "loom")]

use loom::sync::Arc;
use loom::thread;
use vedart::__loom::queue::{self, CAPACITY, Injector, Steal};

/// A stealer: steals once into its own queue and drains it.
fn stealer(steal: Steal<usize>) -> thread::JoinHandle<Vec<usize>> {
    thread::spawn(move || {
        let (_, mut mine) = queue::local();
        let mut taken = Vec::new();
        if let Some(task) = steal.steal_into(&mut mine) {
            taken.push(task);
        }
        while let Some(task) = mine.pop() {
            taken.push(task);
        }
        taken
    })
}

fn assert_each_once(mut taken: Vec<usize>, count: usize) {
    taken.sort_unstable();
    assert_eq!(
        taken,
        (0..count).collect::<Vec<_>>(),
        "a task was lost or taken twice"
    );
}

#[test]
fn owner_push_pop_with_two_stealers() {
    loom::model(|| {
        let (steal, mut local) = queue::local::<usize>();
        let injector = Injector::new();
        let first = stealer(steal.clone());
        let second = stealer(steal);
        let mut taken = Vec::new();
        for task in 0..3 {
            local.push_back_or_overflow(task, &injector);
        }
        taken.extend(local.pop());
        local.push_back_or_overflow(3, &injector);
        while let Some(task) = local.pop() {
            taken.push(task);
        }
        taken.extend(first.join().expect("stealer"));
        taken.extend(second.join().expect("stealer"));
        while let Some(task) = injector.pop() {
            taken.push(task);
        }
        assert_each_once(taken, 4);
    });
}

#[test]
fn overflow_races_a_steal() {
    // CAPACITY + 1 pushes: the last one overflows half the ring into the
    // injector unless a concurrent steal made room first.
    loom::model(|| {
        let (steal, mut local) = queue::local::<usize>();
        let injector = Arc::new(Injector::new());
        let thief = stealer(steal);
        for task in 0..=CAPACITY {
            local.push_back_or_overflow(task, &injector);
        }
        let mut taken = Vec::new();
        while let Some(task) = local.pop() {
            taken.push(task);
        }
        taken.extend(thief.join().expect("stealer"));
        while let Some(task) = injector.pop() {
            taken.push(task);
        }
        assert_each_once(taken, CAPACITY + 1);
    });
}

#[test]
fn a_steal_never_sees_a_half_finished_steal() {
    // Two stealers on the same victim while its owner keeps pushing: a
    // stealer that observes another steal in progress must back off, and the
    // owner must not overwrite slots still being copied out.
    loom::model(|| {
        let (steal, mut local) = queue::local::<usize>();
        let injector = Injector::new();
        for task in 0..2 {
            local.push_back_or_overflow(task, &injector);
        }
        let first = stealer(steal.clone());
        let second = stealer(steal);
        for task in 2..CAPACITY + 1 {
            local.push_back_or_overflow(task, &injector);
        }
        let mut taken = Vec::new();
        while let Some(task) = local.pop() {
            taken.push(task);
        }
        taken.extend(first.join().expect("stealer"));
        taken.extend(second.join().expect("stealer"));
        while let Some(task) = injector.pop() {
            taken.push(task);
        }
        assert_each_once(taken, CAPACITY + 1);
    });
}
