//! [`ConnDriver`]: the task that drives one pool child's pipes.
//!
//! One poll of the driver, repeated while it makes progress (at most
//! `READS_PER_POLL` rounds before it yields):
//!
//! 1. Read stdout and decode frames; a `Started` frame marks its call as
//!    running (or, for a cancelled call's request, terminates the child), each
//!    answer (joined from its `Part` frames; dropped as it arrives when over
//!    the maximum message size, which fails its call) completes its call.
//!    Garbage, a frame over the maximum frame size, a request-kind frame, a frame for an id that is not in flight or an answer without a
//!    `Started` frame first is a protocol error: every call in flight fails with
//!    `Protocol`, the child is SIGKILLed, and bytes after that are ignored.
//! 2. Read stderr into the ring of last lines (and forward it if configured).
//! 3. Flush the frames the callers could not write.
//! 4. Lifecycle: close the stdin of a drained retiring child; arm the
//!    escalation timer (SIGTERM then SIGKILL for a retiring child, SIGKILL for a
//!    terminating one, SIGKILL for a child that closed stdout but lingers).
//! 5. Poll the exit watcher. Once the child exited: drain its pipes, reap it,
//!    settle the remaining calls (see `conn`, "At most once") and tell the pool.

use crate::sync::unmodelled::Arc;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use vedart_reactor::{Async, Direction, Sleep};

use super::call::Outcome;
use super::conn::{Ack, Answered, Conn, End, Phase};
use super::error::ProcessError;
use super::exit::ExitWatcher;
use super::frame::{FrameDecoder, FrameError, FrameKind, Message};
use super::pool::PoolShared;
use super::stderr::StderrTail;
use super::sys::Reaped;
use super::writer::{Writer, flush_queue};
use crate::sync::atomic::Ordering;
use crate::sync::lock;

/// Bytes read from a child's stdout per `read`.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read from a child's stderr per `read`.
const STDERR_CHUNK: usize = 4 * 1024;
/// Reads per pipe in one poll of the driver before it yields to other tasks.
const READS_PER_POLL: usize = 16;
/// Upper bound of what the driver drains from a dead child's pipes (a
/// grandchild holding the pipe open could otherwise keep it busy forever).
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Drives one child's pipes until it is dead and reaped. See the module docs.
pub(crate) struct ConnDriver {
    pool: Arc<PoolShared>,
    conn: Arc<Conn>,
    stdout: Async<File>,
    stderr: Async<File>,
    /// See `ChildParts::stdin_keepalive` in `sys`.
    _stdin_keepalive: File,
    decoder: FrameDecoder,
    scratch: Box<[u8]>,
    stderr_scratch: Box<[u8]>,
    tail: StderrTail,
    exit: ExitWatcher,
    /// EOF (or an error) on stdout.
    stdout_done: bool,
    stderr_done: bool,
    /// Cleared after a protocol error: later bytes are not trusted.
    decoding: bool,
    stdin_closed: bool,
    /// A termination signal was sent: an exit is expected.
    signalled: bool,
    /// SIGKILL was sent: nothing is left to escalate.
    sigkill_sent: bool,
    /// The next escalation step: when to send which signal.
    escalation: Option<(Sleep, libc::c_int)>,
    finished: bool,
}

impl fmt::Debug for ConnDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnDriver")
            .field("conn", &self.conn)
            .finish()
    }
}

impl Future for ConnDriver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(());
        }
        this.conn.driver_waker.register(cx.waker());
        for _ in 0..READS_PER_POLL {
            let mut progress = false;
            if !this.stdout_done {
                progress |= this.poll_stdout(cx);
            }
            if !this.stderr_done {
                progress |= this.poll_stderr(cx);
            }
            this.poll_stdin(cx);
            this.poll_lifecycle(cx);
            let expecting = this.stdout_done || this.stdin_closed || this.signalled;
            if let Poll::Ready(reaped) = this.exit.poll_exit(cx, expecting) {
                this.finish(reaped);
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Busy child: let other tasks run, then continue.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl ConnDriver {
    pub(crate) fn new(
        pool: Arc<PoolShared>,
        conn: Arc<Conn>,
        stdout: Async<File>,
        stderr: Async<File>,
        stdin_keepalive: File,
        exit: ExitWatcher,
    ) -> ConnDriver {
        ConnDriver {
            decoder: FrameDecoder::new(pool.max_frame_size())
                .max_message_size(pool.max_message_size() as u64),
            pool,
            conn,
            stdout,
            stderr,
            _stdin_keepalive: stdin_keepalive,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            stderr_scratch: vec![0; STDERR_CHUNK].into_boxed_slice(),
            tail: StderrTail::default(),
            exit,
            stdout_done: false,
            stderr_done: false,
            decoding: true,
            stdin_closed: false,
            signalled: false,
            sigkill_sent: false,
            escalation: None,
            finished: false,
        }
    }

    /// Reads one chunk of stdout and dispatches the frames in it.
    fn poll_stdout(&mut self, cx: &mut Context<'_>) -> bool {
        let ConnDriver {
            stdout, scratch, ..
        } = self;
        match stdout.poll_io(Direction::Read, cx, |pipe| (&*pipe).read(scratch)) {
            Poll::Pending => false,
            Poll::Ready(Ok(0)) => {
                self.stdout_done = true;
                true
            }
            Poll::Ready(Ok(n)) => {
                self.on_stdout(n);
                true
            }
            Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::Interrupted => true,
            Poll::Ready(Err(_)) => {
                self.stdout_done = true;
                true
            }
        }
    }

    /// Decodes `n` bytes from `scratch` and completes the answered calls.
    fn on_stdout(&mut self, n: usize) {
        self.pool
            .stats
            .bytes_received
            .fetch_add(n as u64, Ordering::Relaxed);
        if !self.decoding {
            return;
        }
        // Out of `self` while `on_message` borrows it (an empty box costs nothing).
        let scratch = std::mem::take(&mut self.scratch);
        self.decode(&scratch[..n]);
        self.scratch = scratch;
    }

    /// Decodes `input` and acts on the messages in it.
    fn decode(&mut self, mut input: &[u8]) {
        loop {
            match self.decoder.decode_message(&mut input) {
                Ok(Some(message)) => {
                    if let Some(detail) = self.on_message(message) {
                        self.protocol_error(detail, None);
                        return;
                    }
                }
                Ok(None) => return,
                Err(err) => {
                    self.protocol_error(err.to_string(), Some(err));
                    return;
                }
            }
        }
    }

    /// Acts on one message from the child; returns the description of a
    /// protocol error, if it is one.
    fn on_message(&mut self, message: Message) -> Option<String> {
        let (id, kind, answer) = match message {
            Message::Frame(frame) => (frame.id, frame.kind, Ok(frame.payload)),
            Message::TooLarge { id, kind, len, max } => (id, kind, Err((len, max))),
        };
        match kind {
            FrameKind::Response | FrameKind::Error => match self.conn.take_call(id) {
                Answered::Call(cell) => {
                    let pid = self.conn.pid();
                    let result = match answer {
                        Ok(payload) if kind == FrameKind::Response => Ok(payload),
                        Ok(payload) => Err(ProcessError::remote(pid, payload)),
                        Err((len, max)) => Err(ProcessError::answer_too_large(pid, len, max)),
                    };
                    let counter = if result.is_ok() {
                        &self.pool.stats.calls_ok
                    } else {
                        &self.pool.stats.calls_failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    cell.complete(Outcome::Done(result));
                    None
                }
                Answered::Violation(detail) => Some(detail),
                Answered::Ignored => None,
            },
            FrameKind::Started => match self.conn.mark_started(id) {
                Ack::Running | Ack::Ignored => None,
                Ack::Abandoned => {
                    // A dead child (`finish` drains its pipes) is past
                    // terminating.
                    if !self.finished {
                        self.conn
                            .terminate(&self.pool, End::Cancelled, libc::SIGTERM);
                    }
                    None
                }
                Ack::Violation(detail) => Some(detail),
            },
            kind => Some(format!("the child sent a {kind:?} frame")),
        }
    }

    fn protocol_error(&mut self, detail: String, frame: Option<FrameError>) {
        self.decoding = false;
        self.signalled = true;
        self.sigkill_sent = true;
        let err = ProcessError::protocol(self.conn.pid(), detail, frame);
        self.conn
            .terminate(&self.pool, End::Protocol(err), libc::SIGKILL);
    }

    fn poll_stderr(&mut self, cx: &mut Context<'_>) -> bool {
        let ConnDriver {
            stderr,
            stderr_scratch,
            ..
        } = self;
        match stderr.poll_io(Direction::Read, cx, |pipe| (&*pipe).read(stderr_scratch)) {
            Poll::Pending => false,
            Poll::Ready(Ok(0)) => {
                self.stderr_done = true;
                true
            }
            Poll::Ready(Ok(n)) => {
                self.on_stderr(n);
                true
            }
            Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::Interrupted => true,
            Poll::Ready(Err(_)) => {
                self.stderr_done = true;
                true
            }
        }
    }

    fn on_stderr(&mut self, n: usize) {
        let data = &self.stderr_scratch[..n];
        self.tail.push(data);
        if self.pool.forward_stderr() {
            // Best effort: the parent's stderr is for humans.
            let _ = io::stderr().write_all(data);
        }
    }

    /// Flushes frames the callers could not write themselves.
    fn poll_stdin(&mut self, cx: &mut Context<'_>) {
        let mut writer = lock(&self.conn.writer);
        let Writer { stdin, queue, .. } = &mut *writer;
        let Some(stdin) = stdin else {
            queue.clear();
            return;
        };
        if queue.is_empty() {
            return;
        }
        let sent = &self.pool.stats.bytes_sent;
        match stdin.poll_io(Direction::Write, cx, |pipe| flush_queue(pipe, queue, sent)) {
            Poll::Pending | Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => {
                queue.clear();
                drop(writer);
                self.signalled = true;
                self.sigkill_sent = true;
                self.conn
                    .terminate(&self.pool, End::WriteFailed, libc::SIGKILL);
            }
        }
    }

    /// Retirement, termination escalation, and children that close stdout
    /// without exiting.
    fn poll_lifecycle(&mut self, cx: &mut Context<'_>) {
        let grace = self.pool.grace_period();
        if !self.stdin_closed && self.conn.is_drained() {
            self.conn.close_stdin();
            self.stdin_closed = true;
            self.arm(grace, libc::SIGTERM);
        }
        if let Phase::Terminating(_) = self.conn.phase() {
            self.signalled = true;
            self.arm(grace, libc::SIGKILL);
        }
        if self.stdout_done {
            // EOF without an exit: the child closed stdout but lingers.
            self.arm(grace, libc::SIGKILL);
        }
        while let Some((timer, signal)) = &mut self.escalation {
            if timer.poll_unpin(cx).is_pending() {
                break;
            }
            let signal = *signal;
            self.escalation = None;
            self.signalled = true;
            self.sigkill_sent |= signal == libc::SIGKILL;
            self.conn.proc.signal(signal);
            if signal == libc::SIGTERM {
                self.arm_now(grace, libc::SIGKILL);
            }
        }
    }

    /// Arms the escalation timer unless one is already running.
    fn arm(&mut self, after: Duration, signal: libc::c_int) {
        if self.escalation.is_none() && !self.sigkill_sent {
            self.arm_now(after, signal);
        }
    }

    fn arm_now(&mut self, after: Duration, signal: libc::c_int) {
        let _enter = self.pool.reactor().enter();
        self.escalation = Some((vedart_reactor::sleep(after), signal));
    }

    /// The child is gone: deliver what it left, settle the rest (see `conn`,
    /// "At most once"), tell the pool.
    fn finish(&mut self, reaped: Reaped) {
        self.finished = true;
        self.escalation = None;
        // Without everything the child wrote, an unread `Started` frame may be
        // missing: then every call is taken as started.
        let complete = self.drain() && self.decoding;
        let tail = self.tail.snapshot();
        let (phase, calls, progressed) = self.conn.mark_dead();
        let pid = self.conn.pid();
        let own_death = matches!(phase, Phase::Live | Phase::Retiring);
        let retired_cleanly = matches!(phase, Phase::Retiring) && calls.is_empty();
        let died = ProcessError::worker_died(pid, reaped, tail);
        for call in calls {
            let cell = call.cell;
            let started = call.started || !complete;
            let outcome = match &phase {
                Phase::Terminating(End::Protocol(err)) => Outcome::Done(Err(err.clone())),
                Phase::Terminating(End::Closed) => Outcome::Done(Err(ProcessError::pool_closed())),
                Phase::Terminating(End::Cancelled) if cell.is_targeted() => {
                    Outcome::Done(Err(ProcessError::cancelled()))
                }
                Phase::Terminating(End::Cancelled) if !started || cell.take_retry() => {
                    Outcome::Retry
                }
                Phase::Terminating(End::Cancelled) => {
                    Outcome::Done(Err(ProcessError::interrupted(pid)))
                }
                _ if cell.is_targeted() => Outcome::Done(Err(died.clone())),
                _ if (!started && progressed) || cell.take_retry() => Outcome::Retry,
                _ => Outcome::Done(Err(died.clone())),
            };
            if let Outcome::Done(Err(_)) = outcome {
                self.pool.stats.calls_failed.fetch_add(1, Ordering::Relaxed);
            }
            cell.complete(outcome);
        }
        self.pool
            .conn_finished(&self.conn, own_death && !retired_cleanly);
    }

    /// Reads what a dead child left in its pipes, without waiting. Returns
    /// whether all of its stdout was read (not cut short by the budget).
    fn drain(&mut self) -> bool {
        let mut budget = DRAIN_LIMIT;
        let mut complete = true;
        while !self.stdout_done {
            if budget == 0 {
                complete = false;
                break;
            }
            match self.stdout.get_ref().read(&mut self.scratch) {
                Ok(0) => self.stdout_done = true,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.on_stdout(n);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // Empty: the child wrote nothing more.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    complete = false;
                    break;
                }
            }
        }
        let mut budget = DRAIN_LIMIT;
        while !self.stderr_done && budget > 0 {
            match self.stderr.get_ref().read(&mut self.stderr_scratch) {
                Ok(0) => self.stderr_done = true,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.on_stderr(n);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        complete
    }
}

impl Drop for ConnDriver {
    /// A driver dropped before its child ended (its executor shut down) kills
    /// and reaps the child, so that nothing is left behind.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.conn.proc.signal(libc::SIGKILL);
        let reaped = self.conn.proc.reap_blocking();
        self.finish(reaped);
    }
}
