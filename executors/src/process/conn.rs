//! One pool child: its shared state ([`Conn`]) and the future that drives its
//! pipes ([`ConnDriver`]).
//!
//! # Who does what
//!
//! - A call registers itself in [`Conn::register`] and writes its frame with
//!   [`Conn::submit`], directly from the caller's task: when nothing is queued
//!   ahead of it, the frame goes out in one `writev` without waking anybody.
//!   Whatever the pipe does not take is queued for the driver.
//! - The [`ConnDriver`], one task per child, reads stdout (decoding answers and
//!   completing calls), reads stderr into a ring of the last lines (so the child
//!   never blocks on a full stderr pipe), flushes queued frames when stdin has
//!   room, escalates termination (SIGTERM, then SIGKILL after the grace period)
//!   and watches for the child's exit.
//!
//! # Life of a child
//!
//! 1. `Live`: accepts calls. After `max_tasks_per_child` requests it turns
//!    `Retiring` (the slot starts a replacement at once).
//! 2. `Retiring`: no new calls; when the last call is answered the driver
//!    closes stdin (a worker exits on EOF), sends SIGTERM after the grace period
//!    and SIGKILL after another.
//! 3. `Terminating`: a call was cancelled after its frame was sent, the child
//!    broke the protocol, or the pool was dropped. The child got SIGTERM (or
//!    SIGKILL for a protocol error); SIGKILL follows after the grace period.
//!    Calls still in flight on a child terminated for a *cancellation* are
//!    re-dispatched to another child (targeted calls fail with `Cancelled`):
//!    they never got an answer, and their loss is not their fault.
//! 4. `Dead`: the exit was seen (pidfd, or EOF on stdout then `waitpid`); the
//!    driver drains what the child left in its pipes, reaps it, fails the calls
//!    still in flight with `WorkerDied` (pid, exit status, last stderr lines)
//!    and tells the pool, which starts a replacement.
//!
//! Lock order: pool state, then [`Conn`]'s `state`, then its `writer`; a call
//! cell's lock is innermost and never held while taking another.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::task::AtomicWaker;
use vedart_reactor::{Async, Direction, Sleep};

use super::call::{CallCell, Outcome};
use super::error::ProcessError;
use super::exit::ExitWatcher;
use super::frame::{ControlOp, FrameDecoder, FrameError, FrameKind, HEADER_LEN, encode_header};
use super::pool::PoolShared;
use super::stderr::StderrTail;
use super::sys::{ChildParts, ProcHandle, RawChild, Reaped};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Mutex, lock};

/// Bytes read from a child's stdout per `read`.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read from a child's stderr per `read`.
const STDERR_CHUNK: usize = 4 * 1024;
/// Frames gathered into one `writev`.
const MAX_IOVECS: usize = 64;
/// Reads per pipe in one poll of the driver before it yields to other tasks.
const READS_PER_POLL: usize = 16;
/// Upper bound of what the driver drains from a dead child's pipes (a
/// grandchild holding the pipe open could otherwise keep it busy forever).
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Why a child is being terminated.
#[derive(Debug, Clone)]
pub(crate) enum End {
    /// A call was cancelled after its frame was sent.
    Cancelled,
    /// The child broke the protocol; its calls already failed with this error.
    Protocol(ProcessError),
    /// The pool was dropped; its calls already failed with `PoolClosed`.
    Closed,
    /// Writing to the child's stdin failed.
    WriteFailed,
}

#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Live,
    Retiring,
    Terminating(End),
    Dead,
}

/// The state of one child that calls and the driver share.
pub(crate) struct Conn {
    /// Unique within the pool: tells a slot's current child from its predecessor.
    pub(crate) id: u64,
    /// Index of the pool slot this child fills.
    pub(crate) slot: usize,
    pub(crate) proc: Arc<ProcHandle>,
    /// Mirrors `phase == Live`, readable without the lock by the dispatcher.
    accepting: AtomicBool,
    /// Calls registered and not yet answered (the dispatcher picks the least).
    pub(crate) in_flight: AtomicUsize,
    /// Requests registered over the child's life (for `max_tasks_per_child`).
    pub(crate) tasks_sent: AtomicU64,
    /// Calls answered (response or error frame).
    pub(crate) completed: AtomicU64,
    pub(crate) started: Instant,
    state: Mutex<ConnState>,
    writer: Mutex<Writer>,
    /// The driver task, woken when frames are queued or the phase changes.
    driver_waker: AtomicWaker,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("slot", &self.slot)
            .field("pid", &self.proc.pid())
            .field("in_flight", &self.in_flight.load(Ordering::Relaxed))
            .finish()
    }
}

struct ConnState {
    phase: Phase,
    /// Calls in flight by request id.
    calls: HashMap<u64, Arc<CallCell>>,
}

struct Writer {
    /// `None` once closed (retirement, pool drop).
    stdin: Option<Async<std::io::PipeWriter>>,
    /// Frames not yet (fully) written, in order.
    queue: VecDeque<OutFrame>,
    /// Contexts whose install frame was queued on this child.
    installed: std::collections::HashSet<u64>,
}

/// One frame waiting to be written.
struct OutFrame {
    /// Header, plus the control op byte for control frames.
    head: [u8; HEADER_LEN + 1],
    head_len: usize,
    body: Option<Arc<Vec<u8>>>,
    /// Bytes of `head` + `body` already written.
    written: usize,
    /// The request id for requests; 0 for control frames.
    request: u64,
}

impl OutFrame {
    fn request(id: u64, payload: &Arc<Vec<u8>>) -> Result<OutFrame, FrameError> {
        let header = encode_header(id, FrameKind::Request, payload.len())?;
        let mut head = [0; HEADER_LEN + 1];
        head[..HEADER_LEN].copy_from_slice(&header);
        Ok(OutFrame {
            head,
            head_len: HEADER_LEN,
            body: Some(payload.clone()),
            written: 0,
            request: id,
        })
    }

    fn control(
        id: u64,
        op: ControlOp,
        payload: Option<&Arc<Vec<u8>>>,
    ) -> Result<OutFrame, FrameError> {
        let len = 1 + payload.map_or(0, |p| p.len());
        let header = encode_header(id, FrameKind::Control, len)?;
        let mut head = [0; HEADER_LEN + 1];
        head[..HEADER_LEN].copy_from_slice(&header);
        head[HEADER_LEN] = op as u8;
        Ok(OutFrame {
            head,
            head_len: HEADER_LEN + 1,
            body: payload.cloned(),
            written: 0,
            request: 0,
        })
    }

    fn len(&self) -> usize {
        self.head_len + self.body.as_ref().map_or(0, |b| b.len())
    }

    /// Puts the unwritten parts into `slices`; returns how many (0 to 2).
    fn unwritten<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        if self.written < self.head_len {
            slices[count] = IoSlice::new(&self.head[self.written..self.head_len]);
            count += 1;
        }
        if let Some(body) = &self.body {
            let from = self.written.saturating_sub(self.head_len);
            if from < body.len() {
                slices[count] = IoSlice::new(&body[from..]);
                count += 1;
            }
        }
        count
    }
}

/// Writes queued frames until the queue is empty (`Ok`) or the pipe is full
/// (`WouldBlock`), counting bytes into `sent`.
fn flush_queue(
    pipe: &std::io::PipeWriter,
    queue: &mut VecDeque<OutFrame>,
    sent: &AtomicU64,
) -> io::Result<()> {
    while !queue.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for frame in queue.iter() {
                if count + 2 > MAX_IOVECS {
                    break;
                }
                count += frame.unwritten(&mut slices[count..]);
            }
            (&*pipe).write_vectored(&slices[..count])
        };
        let mut n = match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        sent.fetch_add(n as u64, Ordering::Relaxed);
        while n > 0 {
            let Some(front) = queue.front_mut() else {
                break;
            };
            let left = front.len() - front.written;
            if n >= left {
                n -= left;
                queue.pop_front();
            } else {
                front.written += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// What [`Conn::register`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Registered {
    /// The call is in flight on this child.
    Yes,
    /// Yes, and it was the child's last task: the slot needs a replacement.
    YesRetired,
    /// The child no longer accepts calls; dispatch elsewhere.
    No,
}

impl Conn {
    /// Wraps a freshly started child; returns the shared state and its driver.
    pub(crate) fn new(
        raw: RawChild,
        id: u64,
        slot: usize,
        pool: &Arc<PoolShared>,
    ) -> io::Result<(Arc<Conn>, ConnDriver)> {
        let reactor = pool.reactor();
        let Some(ChildParts {
            proc,
            stdin,
            stdin_keepalive,
            stdout,
            stderr,
        }) = raw.into_parts()
        else {
            return Err(io::Error::other("the child was already handed out"));
        };
        let registered = Async::with_reactor(stdin, reactor).and_then(|stdin| {
            Ok((
                stdin,
                Async::with_reactor(stdout, reactor)?,
                Async::with_reactor(stderr, reactor)?,
            ))
        });
        let (stdin, stdout, stderr) = match registered {
            Ok(pipes) => pipes,
            Err(err) => {
                proc.signal(libc::SIGKILL);
                proc.reap_blocking();
                return Err(err);
            }
        };
        let exit = ExitWatcher::new(proc.clone(), reactor);
        let conn = Arc::new(Conn {
            id,
            slot,
            proc,
            accepting: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            tasks_sent: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            started: Instant::now(),
            state: Mutex::new(ConnState {
                phase: Phase::Live,
                calls: HashMap::new(),
            }),
            writer: Mutex::new(Writer {
                stdin: Some(stdin),
                queue: VecDeque::new(),
                installed: Default::default(),
            }),
            driver_waker: AtomicWaker::new(),
        });
        let driver = ConnDriver {
            pool: pool.clone(),
            conn: conn.clone(),
            stdout,
            stderr,
            _stdin_keepalive: stdin_keepalive,
            decoder: FrameDecoder::new(pool.max_frame_size()),
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
        };
        Ok((conn, driver))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Whether the dispatcher may send new calls here.
    pub(crate) fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// The current phase, for statistics.
    pub(crate) fn phase(&self) -> Phase {
        lock(&self.state).phase.clone()
    }

    /// Registers a call before its frame is written, so that its answer cannot
    /// arrive unannounced.
    pub(crate) fn register(&self, id: u64, cell: &Arc<CallCell>, max_tasks: Option<u64>) -> Registered {
        let mut state = lock(&self.state);
        if !matches!(state.phase, Phase::Live) {
            return Registered::No;
        }
        state.calls.insert(id, cell.clone());
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let sent = self.tasks_sent.fetch_add(1, Ordering::Relaxed) + 1;
        if max_tasks.is_some_and(|max| sent >= max) {
            state.phase = Phase::Retiring;
            self.accepting.store(false, Ordering::Release);
            drop(state);
            self.driver_waker.wake();
            return Registered::YesRetired;
        }
        Registered::Yes
    }

    /// Writes a registered call's frame (after the context's install frame, the
    /// first time this child sees that context). Returns `false` if the child's
    /// stdin is already closed; the caller then unregisters and re-dispatches.
    pub(crate) fn submit(
        &self,
        id: u64,
        request: &Arc<Vec<u8>>,
        context: Option<(u64, &Arc<Vec<u8>>)>,
        pool: &PoolShared,
    ) -> bool {
        let mut writer = lock(&self.writer);
        let Writer {
            stdin,
            queue,
            installed,
        } = &mut *writer;
        let Some(stdin) = stdin else {
            return false;
        };
        let was_empty = queue.is_empty();
        if let Some((context_id, payload)) = context {
            if !installed.contains(&context_id) {
                // Size was checked when the context was created.
                if let Ok(frame) = OutFrame::control(context_id, ControlOp::Install, Some(payload)) {
                    installed.insert(context_id);
                    queue.push_back(frame);
                }
            }
        }
        match OutFrame::request(id, request) {
            Ok(frame) => queue.push_back(frame),
            // Size was checked when the call was created.
            Err(_) => return false,
        }
        if was_empty {
            // Fast path: nothing ahead of us, write now. `WouldBlock` (pipe full)
            // or any error leaves the rest to the driver.
            let _ = flush_queue(stdin.get_ref(), queue, &pool.stats.bytes_sent);
        }
        if !queue.is_empty() {
            drop(writer);
            self.driver_waker.wake();
        }
        true
    }

    /// Queues a context release, if this child has the context.
    pub(crate) fn release_context(&self, context_id: u64) {
        let mut writer = lock(&self.writer);
        if writer.stdin.is_none() || !writer.installed.remove(&context_id) {
            return;
        }
        if let Ok(frame) = OutFrame::control(context_id, ControlOp::Release, None) {
            writer.queue.push_back(frame);
            drop(writer);
            self.driver_waker.wake();
        }
    }

    /// Removes a call that will never be answered through the normal path.
    pub(crate) fn unregister(&self, id: u64) {
        let mut state = lock(&self.state);
        if state.calls.remove(&id).is_some() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Gives up on a call whose future was dropped or cancelled. If its frame
    /// never left the queue it is simply withdrawn; otherwise the child is
    /// working on it, so the child is terminated (see the module docs).
    pub(crate) fn abandon(&self, id: u64, pool: &Arc<PoolShared>) {
        let mut state = lock(&self.state);
        if state.calls.remove(&id).is_none() {
            return;
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        {
            let mut writer = lock(&self.writer);
            if let Some(at) = writer
                .queue
                .iter()
                .position(|frame| frame.request == id && frame.written == 0)
            {
                writer.queue.remove(at);
                drop(writer);
                drop(state);
                // Retiring children wait for their last call: this may be it.
                self.driver_waker.wake();
                return;
            }
        }
        let calls = self.begin_termination(&mut state, End::Cancelled);
        drop(state);
        debug_assert!(calls.is_empty());
        self.after_termination(pool, libc::SIGTERM);
    }

    /// Terminates the child: no new calls, a signal now, SIGKILL after the grace
    /// period. For `Protocol` and `Closed` the calls in flight fail at once with
    /// the matching error; for the others they wait for the child's end.
    pub(crate) fn terminate(&self, pool: &Arc<PoolShared>, end: End, signal: libc::c_int) {
        let failure = match &end {
            End::Protocol(err) => Some(err.clone()),
            End::Closed => Some(ProcessError::pool_closed()),
            End::Cancelled | End::WriteFailed => None,
        };
        let mut state = lock(&self.state);
        let calls = self.begin_termination(&mut state, end);
        drop(state);
        if let Some(err) = failure {
            pool.stats.calls_failed.fetch_add(calls.len() as u64, Ordering::Relaxed);
            for cell in calls {
                cell.complete(Outcome::Done(Err(err.clone())));
            }
        }
        self.after_termination(pool, signal);
    }

    /// Moves to `Terminating` (unless already there or dead). Returns the calls
    /// to fail now: all of them for `Protocol` and `Closed`, none otherwise.
    fn begin_termination(&self, state: &mut ConnState, end: End) -> Vec<Arc<CallCell>> {
        if matches!(state.phase, Phase::Terminating(_) | Phase::Dead) {
            return Vec::new();
        }
        let fail_now = matches!(end, End::Protocol(_) | End::Closed);
        state.phase = Phase::Terminating(end);
        self.accepting.store(false, Ordering::Release);
        if fail_now {
            let calls: Vec<_> = state.calls.drain().map(|(_, cell)| cell).collect();
            self.in_flight.fetch_sub(calls.len(), Ordering::Relaxed);
            calls
        } else {
            Vec::new()
        }
    }

    fn after_termination(&self, pool: &Arc<PoolShared>, signal: libc::c_int) {
        self.proc.signal(signal);
        self.driver_waker.wake();
        pool.replace(self.slot, self.id);
    }

    /// Stops dispatching here and lets the child finish its calls and exit
    /// (graceful pool shutdown).
    pub(crate) fn retire(&self) {
        let mut state = lock(&self.state);
        if matches!(state.phase, Phase::Live) {
            state.phase = Phase::Retiring;
            self.accepting.store(false, Ordering::Release);
        }
        drop(state);
        self.driver_waker.wake();
    }

    /// Closes the child's stdin (a worker exits on EOF).
    fn close_stdin(&self) {
        let stdin = lock(&self.writer).stdin.take();
        drop(stdin);
    }

    /// Takes the call answered by a frame with this id.
    fn take_call(&self, id: u64) -> Result<Arc<CallCell>, bool> {
        let mut state = lock(&self.state);
        match state.calls.remove(&id) {
            Some(cell) => {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
                self.completed.fetch_add(1, Ordering::Relaxed);
                Ok(cell)
            }
            // An unknown id is a protocol error only while the child is in good
            // standing; a terminated child's late answers are simply dropped.
            None => Err(matches!(state.phase, Phase::Live | Phase::Retiring)),
        }
    }

    /// Whether a retiring child has nothing left to do.
    fn is_drained(&self) -> bool {
        let state = lock(&self.state);
        if !matches!(state.phase, Phase::Retiring) || !state.calls.is_empty() {
            return false;
        }
        lock(&self.writer).queue.is_empty()
    }

    /// Marks the child dead; returns its last phase and the calls still in flight.
    fn mark_dead(&self) -> (Phase, Vec<Arc<CallCell>>) {
        let mut state = lock(&self.state);
        let phase = std::mem::replace(&mut state.phase, Phase::Dead);
        self.accepting.store(false, Ordering::Release);
        let calls: Vec<_> = state.calls.drain().map(|(_, cell)| cell).collect();
        self.in_flight.fetch_sub(calls.len(), Ordering::Relaxed);
        drop(state);
        lock(&self.writer).stdin = None;
        (phase, calls)
    }
}

/// Drives one child's pipes until it is dead and reaped. See the module docs.
pub(crate) struct ConnDriver {
    pool: Arc<PoolShared>,
    conn: Arc<Conn>,
    stdout: Async<std::io::PipeReader>,
    stderr: Async<std::io::PipeReader>,
    /// See [`RawChild::stdin_keepalive`].
    _stdin_keepalive: std::io::PipeReader,
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
        f.debug_struct("ConnDriver").field("conn", &self.conn).finish()
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
        let mut input = &self.scratch[..n];
        loop {
            match self.decoder.decode(&mut input) {
                Ok(Some(frame)) => {
                    let detail = match frame.kind {
                        FrameKind::Response | FrameKind::Error => {
                            match self.conn.take_call(frame.id) {
                                Ok(cell) => {
                                    let pid = self.conn.pid();
                                    let result = if frame.kind == FrameKind::Response {
                                        self.pool.stats.calls_ok.fetch_add(1, Ordering::Relaxed);
                                        Ok(frame.payload)
                                    } else {
                                        self.pool
                                            .stats
                                            .calls_failed
                                            .fetch_add(1, Ordering::Relaxed);
                                        Err(ProcessError::remote(pid, frame.payload))
                                    };
                                    cell.complete(Outcome::Done(result));
                                    None
                                }
                                Err(true) => Some(format!(
                                    "answer to request id {}, which is not in flight",
                                    frame.id
                                )),
                                Err(false) => None,
                            }
                        }
                        kind => Some(format!("the child sent a {kind:?} frame")),
                    };
                    if let Some(detail) = detail {
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

    /// The child is gone: deliver what it left, fail the rest, tell the pool.
    fn finish(&mut self, reaped: Reaped) {
        self.finished = true;
        self.escalation = None;
        self.drain();
        let tail = self.tail.snapshot();
        let (phase, calls) = self.conn.mark_dead();
        let pid = self.conn.pid();
        let own_death = matches!(phase, Phase::Live | Phase::Retiring);
        let retired_cleanly = matches!(phase, Phase::Retiring) && calls.is_empty();
        let died = ProcessError::worker_died(pid, reaped, tail);
        for cell in calls {
            let outcome = match &phase {
                Phase::Terminating(End::Cancelled) if !cell.is_targeted() => Outcome::Retry,
                Phase::Terminating(End::Cancelled) => Outcome::Done(Err(ProcessError::cancelled())),
                Phase::Terminating(End::Protocol(err)) => Outcome::Done(Err(err.clone())),
                Phase::Terminating(End::Closed) => {
                    Outcome::Done(Err(ProcessError::pool_closed()))
                }
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

    /// Reads what a dead child left in its pipes, without waiting.
    fn drain(&mut self) {
        let mut budget = DRAIN_LIMIT;
        while !self.stdout_done && budget > 0 {
            match (&*self.stdout.get_ref()).read(&mut self.scratch) {
                Ok(0) => self.stdout_done = true,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.on_stdout(n);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let mut budget = DRAIN_LIMIT;
        while !self.stderr_done && budget > 0 {
            match (&*self.stderr.get_ref()).read(&mut self.stderr_scratch) {
                Ok(0) => self.stderr_done = true,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.on_stderr(n);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
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
