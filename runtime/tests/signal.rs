//! vedart::signal: Ctrl+C delivered to a child process that waits on
//! `ctrl_c()`, and signal streams in this process.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vedart::signal::{SignalKind, signal};
use vedart::time::timeout;

const CHILD_ENV: &str = "VEDART_SIGNAL_TEST_CHILD";

/// The child: waits for Ctrl+C and exits 0 when it arrives. Run only by
/// `ctrl_c_reaches_a_child_that_waits_for_it`, which sets CHILD_ENV.
#[test]
#[ignore = "the child half of ctrl_c_reaches_a_child_that_waits_for_it"]
fn child_waits_for_ctrl_c() {
    assert!(
        std::env::var_os(CHILD_ENV).is_some(),
        "run by the parent test only"
    );
    let rt = vedart::Runtime::new().unwrap();
    rt.block_on(async {
        let interrupted = vedart::signal::ctrl_c(); // listening from here on
        println!("\nVEDART_CHILD_READY");
        // A watchdog, so a lost signal fails instead of hanging.
        timeout(Duration::from_secs(20), interrupted)
            .await
            .expect("no Ctrl+C within 20 s")
            .expect("listening for Ctrl+C");
        println!("\nVEDART_CHILD_INTERRUPTED");
    });
    std::process::exit(0);
}

#[test]
fn ctrl_c_reaches_a_child_that_waits_for_it() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_waits_for_ctrl_c",
            "--ignored",
            "--nocapture",
        ])
        .arg("--test-threads=1")
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("the child exited before it was ready")
            .unwrap();
        // libtest may print its "test ... " prefix on the same line.
        if line.contains("VEDART_CHILD_READY") {
            break;
        }
    }
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill only sends SIGINT to our own child, which is still running.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the child did not exit after Ctrl+C");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "the child exited with {status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter()
            .any(|line| line.contains("VEDART_CHILD_INTERRUPTED")),
        "{rest:?}"
    );
}

#[test]
fn every_listener_sees_a_delivery_and_a_dropped_one_stops_listening() {
    let rt = vedart::Runtime::new().unwrap();
    rt.block_on(async {
        let mut first = signal(SignalKind::user_defined1()).unwrap();
        let mut second = signal(SignalKind::user_defined1()).unwrap();
        assert_eq!(first.kind(), SignalKind::user_defined1());
        for _ in 0..3 {
            // SAFETY: raise sends SIGUSR1 to this process, which handles it now.
            assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
            for listener in [&mut first, &mut second] {
                let got = timeout(Duration::from_secs(10), listener.recv()).await;
                assert_eq!(got.expect("a delivery was lost"), Some(()));
            }
        }
        drop(first);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
        let got = timeout(Duration::from_secs(10), second.recv()).await;
        assert_eq!(got.expect("a delivery was lost"), Some(()));
    });
}

#[test]
fn deliveries_while_nobody_looks_coalesce_and_recv_is_cancellation_safe() {
    let rt = vedart::Runtime::new().unwrap();
    rt.block_on(async {
        let mut usr2 = signal(SignalKind::user_defined2()).unwrap();
        // Nothing delivered: a cancelled recv consumes nothing.
        assert!(
            timeout(Duration::from_millis(20), usr2.recv())
                .await
                .is_err()
        );
        for _ in 0..5 {
            // SAFETY: raise sends SIGUSR2 to this process, which handles it now.
            assert_eq!(unsafe { libc::raise(libc::SIGUSR2) }, 0);
        }
        assert_eq!(usr2.recv().await, Some(()));
        assert!(
            timeout(Duration::from_millis(20), usr2.recv())
                .await
                .is_err(),
            "five deliveries nobody looked at are one"
        );
    });
}

#[test]
fn signals_no_handler_may_take_are_refused_by_name() {
    let rt = vedart::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        for kind in [
            SignalKind::from_raw(libc::SIGKILL),
            SignalKind::from_raw(libc::SIGSTOP),
            SignalKind::from_raw(0),
            SignalKind::from_raw(10_000),
        ] {
            let error = signal(kind).expect_err("refused");
            assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
            assert!(error.to_string().contains(&kind.as_raw().to_string()));
        }
    });
}
