//! The process-wide reactor and runtime report an OS refusal as an error, and
//! start on a later call once the OS allows it (issue 9, item 8).
//!
//! A test binary of its own: it uses up the process's file descriptors, which
//! would break any test running beside it, and it needs the global reactor and
//! runtime not started yet.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::fs::File;
use std::io;
use std::time::Duration;

use vedart_reactor::Reactor;

/// Opens `/dev/null` until the process has no descriptor left; the files
/// hold them until dropped.
fn use_up_descriptors() -> Vec<File> {
    let mut held = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => held.push(file),
            Err(err) => {
                assert_eq!(err.raw_os_error(), Some(24), "EMFILE expected: {err}");
                return held;
            }
        }
    }
}

fn is_emfile(err: &io::Error) -> bool {
    err.raw_os_error() == Some(24) || err.to_string().contains("os error 24")
}

#[test]
fn global_reactor_and_runtime_fail_with_the_os_error_then_start() {
    let held = use_up_descriptors();
    let reactor = Reactor::current_or_global();
    let runtime = vedart::Runtime::global();
    drop(held);

    let err = reactor.expect_err("no descriptor for an epoll instance");
    assert!(is_emfile(&err), "{err}");
    let err = runtime.expect_err("no descriptor for the runtime's reactor");
    assert!(is_emfile(&err), "{err}");

    // Nothing was left half-started: both start now.
    Reactor::current_or_global().expect("descriptors are back");
    // Its `veda-reactor` thread runs: a timer outside any runtime fires.
    futures::executor::block_on(vedart_reactor::sleep(Duration::from_millis(5)));
    let rt = vedart::Runtime::global().expect("descriptors are back");
    assert_eq!(
        rt.block_on(async { vedart::spawn(async { 6 * 7 }).await })
            .ok(),
        Some(42)
    );
    assert_eq!(vedart::block_on(async { 1 + 1 }), 2);
}
