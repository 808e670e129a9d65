//! The parker: a worker parking (in the driver or on its condvar) never misses
//! an unpark that races with it.
#![cfg(feature = "loom")]

use loom::sync::Arc;
use loom::thread;
use vedart::__loom::park::{MockDriver, Parker};

#[test]
fn unpark_racing_park_in_the_driver_is_not_lost() {
    loom::model(|| {
        let driver = Arc::new(MockDriver::new());
        let parker = Parker::new();
        let sleeper = {
            let (driver, parker) = (driver.clone(), parker.clone());
            thread::spawn(move || parker.park(&driver))
        };
        parker.unpark(&driver);
        // A lost notification leaves the sleeper blocked: loom reports a deadlock.
        sleeper.join().expect("sleeper");
    });
}

#[test]
fn two_sleepers_one_in_the_driver_one_on_the_condvar() {
    loom::model(|| {
        let driver = Arc::new(MockDriver::new());
        let parkers = [Parker::new(), Parker::new()];
        let sleepers: Vec<_> = parkers
            .iter()
            .map(|parker| {
                let (driver, parker) = (driver.clone(), parker.clone());
                thread::spawn(move || parker.park(&driver))
            })
            .collect();
        for parker in &parkers {
            parker.unpark(&driver);
        }
        for sleeper in sleepers {
            sleeper.join().expect("sleeper");
        }
    });
}

#[test]
fn a_notification_is_consumed_once() {
    loom::model(|| {
        let driver = Arc::new(MockDriver::new());
        let parker = Parker::new();
        parker.unpark(&driver);
        parker.unpark(&driver);
        // Both unparks collapse into one pending notification...
        parker.park(&driver);
        // ...so a second park blocks until the next unpark.
        let sleeper = {
            let (driver, parker) = (driver.clone(), parker.clone());
            thread::spawn(move || parker.park(&driver))
        };
        parker.unpark(&driver);
        sleeper.join().expect("sleeper");
    });
}
