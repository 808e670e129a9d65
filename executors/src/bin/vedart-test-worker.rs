//! A worker for the process-pool tests: speaks the frame protocol on
//! stdin/stdout (see `executors/src/process/README.md`) and obeys commands
//! written in the request payload as text, `<command> <argument>`. Every
//! request is acknowledged with a `Started` frame before it runs, except
//! `no-start`.
//!
//! | command | effect |
//! | --- | --- |
//! | `echo <text>` | answers `<text>` |
//! | `upper <text>` | answers `<text>` in upper case |
//! | `sleep <ms>` | sleeps, then answers `slept` |
//! | `sleep-pid <ms>` | sleeps, then answers its pid |
//! | `big <n>` | answers `n` bytes of `x` (in `Part` frames when over the maximum frame size) |
//! | `len` | answers the length of the whole request (received in `Part` frames when long) |
//! | `pid` | answers its pid |
//! | `env <NAME>` | answers the variable's value, or an error frame |
//! | `args` | answers its arguments, comma-separated |
//! | `cwd` | answers its working directory |
//! | `error <text>` | answers an error frame with `<text>` |
//! | `ctx <id>` | answers the context installed under `<id>`, or an error frame |
//! | `ctx-count` | answers how many contexts are installed |
//! | `exit <code>` | exits at once with `<code>` |
//! | `signal <n>` | sends itself signal `n` |
//! | `abort` | aborts (SIGABRT) |
//! | `stderr <n> <text>` | writes `n` numbered lines to stderr, then exits with 3 |
//! | `garbage` | writes bytes that are not a frame |
//! | `oversized` | writes a header announcing a 4 GiB answer |
//! | `bad-id` | answers under an id that was never sent |
//! | `ignore-term` | ignores SIGTERM from now on, answers `ok` |
//! | `close-stdout` | closes its stdout and sleeps for a minute |
//! | `grandchild` | starts `sleep 600` and answers its pid |
//! | `append <path> <ms>` | appends a line to the file, sleeps, answers `appended` |
//! | `append-exit <path> <code>` | appends a line to the file, then exits with `<code>` |
//! | `bg-append <path> <ms>` | like `append`, on a thread of its own: the next requests run meanwhile |
//! | `no-start` | answers `ok` without a `Started` frame first (a protocol error) |
//!
//! The worker exits with status 0 at EOF on stdin. With the environment variable
//! `VEDART_TEST_WORKER_EXIT_AT_START=<code>` it exits at once with that code. It
//! splits answers longer than `VEDART_MAX_FRAME_SIZE` (set by the pool) into
//! `Part` frames, and joins requests that come in them.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use vedart_executors::process::frame::{ControlOp, FrameKind, HEADER_LEN, encode_message};
use vedart_executors::process::{DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_ENV};

/// Largest request this worker accepts.
const MAX_REQUEST: usize = 1 << 30;

fn main() {
    if let Ok(code) = std::env::var("VEDART_TEST_WORKER_EXIT_AT_START") {
        eprintln!("exiting at start as asked");
        std::process::exit(code.parse().unwrap_or(1));
    }
    let stdin = io::stdin().lock();
    let mut input = BufReader::with_capacity(64 * 1024, stdin);
    let output: Output = Arc::new(Mutex::new(BufWriter::with_capacity(
        64 * 1024,
        io::stdout(),
    )));
    let mut contexts: HashMap<u64, Vec<u8>> = HashMap::new();
    // The message whose `Part` frames arrived so far.
    let mut parts: Option<(u64, Vec<u8>)> = None;
    loop {
        let mut header = [0u8; HEADER_LEN];
        if input.read_exact(&mut header).is_err() {
            let _ = out(&output).flush();
            std::process::exit(0);
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut id_bytes = [0u8; 8];
        id_bytes.copy_from_slice(&header[4..12]);
        let id = u64::from_le_bytes(id_bytes);
        if len > MAX_REQUEST {
            eprintln!("request too large: {len}");
            std::process::exit(2);
        }
        let mut payload = vec![0u8; len];
        if input.read_exact(&mut payload).is_err() {
            std::process::exit(0);
        }
        let kind = FrameKind::from_byte(header[12]);
        if let Some((first, mut joined)) = parts.take() {
            if first != id {
                eprintln!("frame {id} inside the message of {first}");
                std::process::exit(2);
            }
            joined.extend_from_slice(&payload);
            payload = joined;
        }
        if kind == Some(FrameKind::Part) {
            parts = Some((id, payload));
            continue;
        }
        match kind {
            Some(FrameKind::Request) => {
                if !payload.starts_with(b"no-start") {
                    // The acknowledgement must be out before the work begins.
                    let mut out = out(&output);
                    reply(&mut *out, id, FrameKind::Started, b"");
                    let _ = out.flush();
                }
                handle(id, &payload, &output, &contexts);
            }
            Some(FrameKind::Control) => {
                match payload.first().copied().and_then(ControlOp::from_byte) {
                    Some(ControlOp::Install) => {
                        contexts.insert(id, payload[1..].to_vec());
                    }
                    Some(ControlOp::Release) => {
                        contexts.remove(&id);
                    }
                    None => {
                        eprintln!("unknown control op");
                        std::process::exit(2);
                    }
                }
            }
            _ => {
                eprintln!("unexpected frame kind {}", header[12]);
                std::process::exit(2);
            }
        }
        // Answers are batched while more requests are already buffered.
        if input.buffer().is_empty() {
            let _ = out(&output).flush();
        }
    }
}

/// Stdout, shared with the threads of `bg-append`.
type Output = Arc<Mutex<BufWriter<io::Stdout>>>;

fn out(output: &Output) -> MutexGuard<'_, BufWriter<io::Stdout>> {
    output
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pool's maximum frame size, from `VEDART_MAX_FRAME_SIZE`.
fn max_frame_size() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var(MAX_FRAME_SIZE_ENV)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(DEFAULT_MAX_FRAME_SIZE)
    })
}

fn reply(out: &mut impl Write, id: u64, kind: FrameKind, payload: &[u8]) {
    let mut wire = Vec::with_capacity(payload.len() + HEADER_LEN);
    encode_message(id, kind, payload, max_frame_size(), &mut wire).expect("a valid frame size");
    let _ = out.write_all(&wire);
}

/// Appends one line to the file at `path`.
fn append_line(path: &str) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(b"ran\n")
}

fn handle(id: u64, payload: &[u8], output: &Output, contexts: &HashMap<u64, Vec<u8>>) {
    let text = String::from_utf8_lossy(payload);
    let (command, arg) = text.split_once(' ').unwrap_or((&text, ""));
    // Commands that block or end the process must not hold the stdout lock
    // (threads of `bg-append` answer meanwhile).
    match command {
        "sleep" | "sleep-pid" | "append" | "append-exit" | "bg-append" | "exit" | "signal"
        | "abort" | "stderr" | "close-stdout" => {
            handle_unlocked(id, command, arg, output);
            return;
        }
        _ => {}
    }
    let out = &mut *out(output);
    match command {
        "echo" => reply(out, id, FrameKind::Response, arg.as_bytes()),
        "upper" => reply(out, id, FrameKind::Response, arg.to_uppercase().as_bytes()),
        "big" => {
            let n: usize = arg.trim().parse().unwrap_or(0);
            reply(out, id, FrameKind::Response, &vec![b'x'; n]);
        }
        "len" => reply(
            out,
            id,
            FrameKind::Response,
            payload.len().to_string().as_bytes(),
        ),
        "pid" => reply(
            out,
            id,
            FrameKind::Response,
            std::process::id().to_string().as_bytes(),
        ),
        "env" => match std::env::var(arg.trim()) {
            Ok(value) => reply(out, id, FrameKind::Response, value.as_bytes()),
            Err(_) => reply(out, id, FrameKind::Error, b"unset"),
        },
        "args" => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            reply(out, id, FrameKind::Response, args.join(",").as_bytes());
        }
        "cwd" => {
            let cwd = std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            reply(out, id, FrameKind::Response, cwd.as_bytes());
        }
        "error" => reply(out, id, FrameKind::Error, arg.as_bytes()),
        "ctx" => match arg
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|key| contexts.get(&key))
        {
            Some(bytes) => reply(out, id, FrameKind::Response, bytes),
            None => reply(out, id, FrameKind::Error, b"missing"),
        },
        "ctx-count" => reply(
            out,
            id,
            FrameKind::Response,
            contexts.len().to_string().as_bytes(),
        ),
        "garbage" => {
            let _ = out.write_all(b"\xffthis is not a frame, not at all\n");
            let _ = out.flush();
        }
        "oversized" => {
            let mut header = [0u8; HEADER_LEN];
            header[0..4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
            header[4..12].copy_from_slice(&id.to_le_bytes());
            header[12] = FrameKind::Response.as_byte();
            let _ = out.write_all(&header);
            let _ = out.flush();
        }
        "bad-id" => reply(
            out,
            id.wrapping_add(1_000_000),
            FrameKind::Response,
            b"who?",
        ),
        "ignore-term" => {
            // SAFETY: SIG_IGN for SIGTERM installs no handler code.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            reply(out, id, FrameKind::Response, b"ok");
        }
        "grandchild" => {
            let child = std::process::Command::new("sleep")
                .arg("600")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            match child {
                Ok(child) => reply(
                    out,
                    id,
                    FrameKind::Response,
                    child.id().to_string().as_bytes(),
                ),
                Err(err) => reply(out, id, FrameKind::Error, err.to_string().as_bytes()),
            }
        }
        "no-start" => reply(out, id, FrameKind::Response, b"ok"),
        other => reply(
            out,
            id,
            FrameKind::Error,
            format!("unknown command {other:?}").as_bytes(),
        ),
    }
}

/// The commands of `handle` that take the stdout lock only to answer.
fn handle_unlocked(id: u64, command: &str, arg: &str, output: &Output) {
    let answer = |kind: FrameKind, payload: &[u8]| {
        let mut out = out(output);
        reply(&mut *out, id, kind, payload);
        let _ = out.flush();
    };
    let flush = || {
        let _ = out(output).flush();
    };
    let millis = |text: &str| Duration::from_millis(text.trim().parse().unwrap_or(0));
    match command {
        "sleep" => {
            flush();
            std::thread::sleep(millis(arg));
            answer(FrameKind::Response, b"slept");
        }
        "sleep-pid" => {
            flush();
            std::thread::sleep(millis(arg));
            answer(
                FrameKind::Response,
                std::process::id().to_string().as_bytes(),
            );
        }
        "append" => {
            let (path, ms) = arg.rsplit_once(' ').unwrap_or((arg, "0"));
            match append_line(path) {
                Ok(()) => {
                    flush();
                    std::thread::sleep(millis(ms));
                    answer(FrameKind::Response, b"appended");
                }
                Err(err) => answer(FrameKind::Error, err.to_string().as_bytes()),
            }
        }
        "append-exit" => {
            let (path, code) = arg.rsplit_once(' ').unwrap_or((arg, "1"));
            let _ = append_line(path);
            flush();
            std::process::exit(code.trim().parse().unwrap_or(1));
        }
        "bg-append" => {
            let (path, ms) = arg.rsplit_once(' ').unwrap_or((arg, "0"));
            let (path, pause) = (path.to_owned(), millis(ms));
            let output = output.clone();
            std::thread::spawn(move || {
                let result = append_line(&path);
                std::thread::sleep(pause);
                let mut out = out(&output);
                match result {
                    Ok(()) => reply(&mut *out, id, FrameKind::Response, b"appended"),
                    Err(err) => reply(&mut *out, id, FrameKind::Error, err.to_string().as_bytes()),
                }
                let _ = out.flush();
            });
        }
        "exit" => {
            flush();
            std::process::exit(arg.trim().parse().unwrap_or(1));
        }
        "signal" => {
            flush();
            let signal = arg.trim().parse().unwrap_or(libc::SIGKILL);
            // SAFETY: kill on our own pid has no memory-safety preconditions.
            unsafe { libc::kill(libc::getpid(), signal) };
            std::thread::sleep(Duration::from_secs(60));
        }
        "abort" => {
            flush();
            std::process::abort();
        }
        "stderr" => {
            flush();
            let (count, line) = arg.split_once(' ').unwrap_or((arg, "line"));
            let count: usize = count.parse().unwrap_or(1);
            let mut err = io::stderr().lock();
            for i in 0..count {
                let _ = writeln!(err, "{line} {i}");
            }
            let _ = err.flush();
            std::process::exit(3);
        }
        "close-stdout" => {
            flush();
            // SAFETY: closing fd 1 only affects this process; nothing writes
            // to stdout afterwards.
            unsafe { libc::close(1) };
            std::thread::sleep(Duration::from_secs(60));
        }
        _ => answer(FrameKind::Error, b"not an unlocked command"),
    }
}
