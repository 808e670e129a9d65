//! Integration tests of the async `Command` / `Child`.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use futures::{AsyncReadExt, AsyncWriteExt};
use vedart_executors::process::Command;

/// Runs a future to completion, failing the test instead of hanging.
fn run<F: Future>(future: F) -> F::Output {
    block_on(async {
        vedart_reactor::timeout(Duration::from_secs(30), future)
            .await
            .expect("the test hung for 30 s")
    })
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

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn output_collects_stdout_stderr_and_the_status() {
    let output = run(Command::new("sh")
        .args(["-c", "echo out; echo err >&2; exit 3"])
        .output())
    .unwrap();
    assert_eq!(output.stdout, b"out\n");
    assert_eq!(output.stderr, b"err\n");
    assert_eq!(output.status.code(), Some(3));
}

#[test]
fn output_reads_large_outputs_on_both_pipes_without_deadlock() {
    // 1 MiB on each pipe: far more than a pipe holds, so both must be drained
    // while the child runs.
    let output = run(Command::new("sh")
        .args([
            "-c",
            "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2",
        ])
        .output())
    .unwrap();
    assert!(output.status.success());
    assert_eq!(output.stdout.len(), 1 << 20);
    assert_eq!(output.stderr.len(), 1 << 20);
}

#[test]
fn status_reports_success_and_failure() {
    assert!(run(Command::new("true").status()).unwrap().success());
    let status = run(Command::new("false").status()).unwrap();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn piped_stdin_and_stdout_talk_to_the_child() {
    run(async {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"through the pipe").await.unwrap();
        drop(stdin);
        let mut echoed = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut echoed)
            .await
            .unwrap();
        assert_eq!(echoed, "through the pipe");
        assert!(child.wait().await.unwrap().success());
    });
}

#[test]
fn wait_closes_stdin_so_a_reading_child_can_finish() {
    let status = run(async {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.wait().await
    })
    .unwrap();
    assert!(status.success());
}

#[test]
fn kill_then_wait_reports_the_signal() {
    run(async {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        child.kill().unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(gone(pid));
        // Killing a reaped child is a no-op, and waiting again gives the same status.
        child.kill().unwrap();
        assert_eq!(child.wait().await.unwrap().signal(), Some(libc::SIGKILL));
    });
}

#[test]
fn signal_sends_any_signal() {
    run(async {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        child.signal(libc::SIGTERM).unwrap();
        assert_eq!(child.wait().await.unwrap().signal(), Some(libc::SIGTERM));
    });
}

#[test]
fn try_wait_does_not_block() {
    let mut child = Command::new("sleep").arg("0.2").spawn().unwrap();
    assert_eq!(child.try_wait().unwrap(), None);
    assert!(wait_until(|| child.try_wait().unwrap().is_some()));
    assert!(child.try_wait().unwrap().unwrap().success());
}

#[test]
fn many_children_are_awaited_concurrently() {
    let statuses = run(futures::future::join_all((0..20).map(|i| async move {
        Command::new("sh")
            .args(["-c", &format!("sleep 0.05; exit {}", i % 7)])
            .status()
            .await
    })));
    for (i, status) in statuses.into_iter().enumerate() {
        assert_eq!(status.unwrap().code(), Some((i % 7) as i32));
    }
}

#[test]
fn a_dropped_child_is_reaped_in_the_background() {
    let child = Command::new("sleep").arg("0.1").spawn().unwrap();
    let pid = child.id();
    drop(child);
    assert!(
        wait_until(|| gone(pid)),
        "the dropped child became a zombie"
    );
}

#[test]
fn kill_on_drop_kills_the_child() {
    let child = Command::new("sleep")
        .arg("30")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id();
    drop(child);
    assert!(wait_until(|| gone(pid)), "kill_on_drop did not kill");
}

#[test]
fn a_missing_program_is_not_found() {
    let err = Command::new("/nonexistent/program").spawn().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn environment_and_working_directory_are_applied() {
    let dir = std::env::temp_dir().canonicalize().unwrap();
    let output = run(Command::new("sh")
        .args(["-c", "echo \"$VEDART_X:$(pwd)\""])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("VEDART_X", "x")
        .current_dir(&dir)
        .output())
    .unwrap();
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("x:{}\n", dir.display())
    );
}
