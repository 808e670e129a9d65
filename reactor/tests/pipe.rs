//! Pipes: round trips, EOF when the writer goes, BrokenPipe when the reader
//! goes (also for a writer already waiting), transfers larger than the pipe
//! buffer, and child-process pipes.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

mod common;

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::task::{Context, Poll};
use std::time::Duration;

use common::{DrivenReactor, read_all, within};
use futures::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::task::noop_waker;
use vedart_reactor::{PipeReader, PipeWriter, pipe, sleep};

#[test]
fn round_trip() {
    within(async {
        let (mut reader, mut writer) = pipe().unwrap();
        for i in 0..50u8 {
            writer.write_all(&[i; 33]).await.unwrap();
            let mut buf = [0; 33];
            reader.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, [i; 33]);
        }
    });
}

#[test]
fn dropping_the_writer_gives_eof_to_a_waiting_reader() {
    within(async {
        let (mut reader, mut writer) = pipe().unwrap();
        writer.write_all(b"last words").await.unwrap();
        let read = async { read_all(&mut reader).await.unwrap() };
        let close = async {
            // The reader has consumed the data and waits when the writer goes.
            sleep(Duration::from_millis(30)).await;
            drop(writer);
        };
        let (got, ()) = futures::join!(read, close);
        assert_eq!(got, b"last words");
        assert_eq!(reader.read(&mut [0; 4]).await.unwrap(), 0, "EOF stays EOF");
    });
}

#[test]
fn dropping_the_reader_gives_broken_pipe() {
    within(async {
        let (reader, mut writer) = pipe().unwrap();
        drop(reader);
        let err = writer.write_all(b"nobody listens").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    });
}

#[test]
fn a_writer_waiting_on_a_full_pipe_gets_broken_pipe_when_the_reader_goes() {
    let (reader, mut writer) = pipe().unwrap();
    // Fill the pipe until a write would block.
    let chunk = [7u8; 4096];
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut filled = 0;
    while let Poll::Ready(written) = Pin::new(&mut writer).poll_write(&mut cx, &chunk) {
        filled += written.unwrap();
        assert!(filled < 64 << 20, "the pipe never filled up");
    }
    let blocked_writer = std::thread::spawn(move || within(writer.write_all(&chunk)));
    std::thread::sleep(Duration::from_millis(30)); // let it wait for room
    drop(reader);
    let err = blocked_writer.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
}

#[test]
fn a_transfer_larger_than_the_pipe_buffer() {
    const LEN: usize = 4 << 20;
    let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 256) as u8).collect();
    within(async {
        let (mut reader, mut writer) = pipe().unwrap();
        let write = async {
            // Uneven chunks so that writes straddle the pipe's page boundaries.
            for chunk in data.chunks(100_003) {
                writer.write_all(chunk).await.unwrap();
            }
            drop(writer);
        };
        let read = async { read_all(&mut reader).await.unwrap() };
        let ((), got) = futures::join!(write, read);
        assert!(got == data, "every byte arrives, in order");
    });
}

#[test]
fn a_transfer_between_threads_on_a_private_reactor() {
    const LEN: usize = 4 << 20;
    let driven = DrivenReactor::new();
    let _enter = driven.reactor().enter();
    let (mut reader, mut writer) = pipe().unwrap();
    assert_eq!(driven.reactor().load().0, 2);
    let reactor = driven.reactor().clone();
    let writer_thread = std::thread::spawn(move || {
        let _enter = reactor.enter();
        within(async {
            let block = vec![0xA5; 64 * 1024];
            for _ in 0..LEN / block.len() {
                writer.write_all(&block).await.unwrap();
            }
        });
    });
    let got = within(read_all(&mut reader)).unwrap();
    writer_thread.join().unwrap();
    assert_eq!(got.len(), LEN);
    assert!(got.iter().all(|&b| b == 0xA5));
    drop(reader);
    assert_eq!(driven.reactor().load(), (0, 0));
}

#[test]
fn child_stdin_and_stdout() {
    const LEN: usize = 1 << 20;
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cat");
    let mut stdin = PipeWriter::from_child_stdin(child.stdin.take().unwrap()).unwrap();
    let mut stdout = PipeReader::from_child_stdout(child.stdout.take().unwrap()).unwrap();
    let data: Vec<u8> = (0..LEN).map(|i| (i % 253) as u8).collect();
    within(async {
        // Both at once: `cat` blocks once its output pipe is full.
        let write = async {
            stdin.write_all(&data).await.unwrap();
            drop(stdin); // EOF for cat, which then exits
        };
        let read = async { read_all(&mut stdout).await.unwrap() };
        let ((), got) = futures::join!(write, read);
        assert!(got == data);
    });
    assert!(child.wait().unwrap().success());
}

#[test]
fn child_stderr() {
    let mut child = Command::new("sh")
        .args(["-c", "echo oops >&2"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let mut stderr = PipeReader::try_from(child.stderr.take().unwrap()).unwrap();
    let mut text = String::new();
    within(stderr.read_to_string(&mut text)).unwrap();
    assert_eq!(text, "oops\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn into_owned_fd_hands_back_a_blocking_fd() {
    let (reader, mut writer) = pipe().unwrap();
    let fd = reader.into_owned_fd().unwrap();
    let late_writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        within(writer.write_all(b"late")).unwrap();
    });
    // A non-blocking fd would fail here at once with WouldBlock.
    let mut got = Vec::new();
    File::from(fd).read_to_end(&mut got).unwrap();
    late_writer.join().unwrap();
    assert_eq!(got, b"late");
}

#[test]
fn a_regular_file_is_refused() {
    // epoll cannot watch regular files; the error must say so, not hang later.
    let file = File::open(std::env::current_exe().unwrap()).unwrap();
    let err = PipeReader::from_owned_fd(file.into()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
}

#[test]
fn pipe_ends_are_close_on_exec() {
    use std::os::fd::AsRawFd;
    let (reader, writer) = pipe().unwrap();
    for fd in [reader.as_raw_fd(), writer.as_raw_fd()] {
        // SAFETY: F_GETFD only reads the flags of an fd we own for this scope.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags >= 0 && flags & libc::FD_CLOEXEC != 0);
    }
}
