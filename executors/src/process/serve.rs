//! The child side of the pool: [`serve`] and [`serve_async`] turn a handler
//! into a complete worker program, so that no application implements the frame
//! protocol (`README.md` beside this file) by hand.
//!
//! How they work is documented on [`serve`] (public docs); this file is the
//! implementation.
//!
//! [`serve`] runs a synchronous handler on the calling thread, one request
//! after the other in arrival order (start more pool workers for parallelism).
//! [`serve_async`] is a future that runs every request's handler future
//! concurrently inside itself, so handlers may `.await` timers, sockets or
//! tasks of the runtime that polls it; it reads stdin on a thread of its own
//! (`veda-serve-stdin`).
//!
//! # Errors on the wire
//!
//! An `Error` frame written by these functions carries a [`Failure`]: one kind
//! byte, then the detail bytes. [`Failure::from_error`] reads it back from the
//! caller's [`ProcessError`]; the typed layer ([`typed`](super::typed)) maps it
//! to a [`TypedError`](super::TypedError) for you.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;

use futures::channel::mpsc;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use super::error::ProcessError;
use super::frame::{ControlOp, FrameDecoder, FrameKind, Message, encode_message};
use super::pool::{DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE, MAX_FRAME_SIZE_ENV};
use crate::sync::unmodelled::{Arc, Mutex, OnceLock, lock};

/// Bytes asked of stdin per `read`.
const READ_CHUNK: usize = 64 * 1024;

/// One request, as a handler gets it.
///
/// # Examples
///
/// ```no_run
/// use vedart_executors::process::{Failure, Request, serve};
///
/// fn main() -> std::io::Result<()> {
///     serve(|request: Request| match request.payload() {
///         b"ping" => Ok(b"pong".to_vec()),
///         other => Err(Failure::from(format!("unknown request {other:?}"))),
///     })
/// }
/// ```
pub struct Request {
    id: u64,
    payload: Vec<u8>,
    contexts: Contexts,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl Request {
    /// The request id the pool gave this request (unique in the pool).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The request's bytes, as passed to
    /// [`ProcessPool::call`](super::ProcessPool::call).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The request's bytes, by value.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// The bytes of the pool context with this id
    /// ([`Context::id`](super::Context::id)), if the pool installed it in this
    /// worker. A call made with
    /// [`ProcessPool::call_with`](super::ProcessPool::call_with) always finds
    /// its context: the pool installs it before sending the request. The
    /// request's payload must say which context it needs.
    pub fn context(&self, id: u64) -> Option<Arc<[u8]>> {
        lock(&self.contexts).get(&id).cloned()
    }
}

/// The contexts installed in this worker, by id.
type Contexts = Arc<Mutex<HashMap<u64, Arc<[u8]>>>>;

/// Why a request failed, as an `Error` frame of [`serve`] carries it: a kind and
/// detail bytes. A handler returns one as its `Err`; the caller reads it back
/// with [`Failure::from_error`].
///
/// Wire form: one byte, the kind ([`FailureKind`]), then the detail.
#[derive(Clone, PartialEq, Eq)]
pub struct Failure {
    kind: FailureKind,
    detail: Vec<u8>,
}

/// The kind of a [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The handler returned an error; the detail is what it returned.
    Handler = 1,
    /// The handler panicked; the detail is the panic message (UTF-8). The
    /// worker survived and goes on serving.
    Panicked = 2,
    /// The worker could not accept the request (for the typed layer: it did not
    /// decode as the handler's request type); the detail says why (UTF-8).
    BadRequest = 3,
}

impl FailureKind {
    fn from_byte(byte: u8) -> Option<FailureKind> {
        match byte {
            1 => Some(FailureKind::Handler),
            2 => Some(FailureKind::Panicked),
            3 => Some(FailureKind::BadRequest),
            _ => None,
        }
    }
}

impl Failure {
    /// A failure of `kind` with these detail bytes.
    pub fn new(kind: FailureKind, detail: impl Into<Vec<u8>>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The detail bytes.
    pub fn detail(&self) -> &[u8] {
        &self.detail
    }

    /// The detail as text (invalid UTF-8 replaced).
    pub fn message(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.detail)
    }

    /// The payload of the `Error` frame that carries this failure.
    pub fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(1 + self.detail.len());
        payload.push(self.kind as u8);
        payload.extend_from_slice(&self.detail);
        payload
    }

    /// Reads a failure from an `Error` frame's payload; `None` when the payload
    /// is not one (a worker that does not use [`serve`]).
    pub fn decode(payload: &[u8]) -> Option<Failure> {
        let (&kind, detail) = payload.split_first()?;
        Some(Failure::new(FailureKind::from_byte(kind)?, detail))
    }

    /// The failure a worker built on [`serve`] answered, from the error of the
    /// call: `None` unless the error is a `Remote` one carrying a failure.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use vedart_executors::process::{Failure, FailureKind, ProcessPool};
    ///
    /// # futures::executor::block_on(async {
    /// let pool = ProcessPool::builder("my-worker").build()?;
    /// if let Err(err) = pool.call(b"job".to_vec()).await {
    ///     match Failure::from_error(&err) {
    ///         Some(failure) if failure.kind() == FailureKind::Panicked => {
    ///             eprintln!("the handler panicked: {}", failure.message())
    ///         }
    ///         Some(failure) => eprintln!("the handler failed: {}", failure.message()),
    ///         None => return Err(err),
    ///     }
    /// }
    /// # Ok::<(), vedart_executors::process::ProcessError>(())
    /// # });
    /// ```
    pub fn from_error(err: &ProcessError) -> Option<Failure> {
        Failure::decode(err.remote_payload()?)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("kind", &self.kind)
            .field("detail", &self.message())
            .finish()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FailureKind::Handler => "the handler failed",
            FailureKind::Panicked => "the handler panicked",
            FailureKind::BadRequest => "the worker rejected the request",
        };
        write!(f, "{what}: {}", self.message())
    }
}

impl std::error::Error for Failure {}

/// A handler error of these bytes.
impl From<Vec<u8>> for Failure {
    fn from(detail: Vec<u8>) -> Failure {
        Failure::new(FailureKind::Handler, detail)
    }
}

/// A handler error with this message.
impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::new(FailureKind::Handler, message)
    }
}

/// A handler error with this message.
impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::new(FailureKind::Handler, message)
    }
}

/// What a handler answers: the response bytes, or why it failed.
pub type Reply = Result<Vec<u8>, Failure>;

/// A synchronous request handler for [`serve`]: any
/// `Fn(Request) -> Result<Vec<u8>, Failure>`, or a typed one made by
/// [`typed`](super::typed).
pub trait Handler {
    /// Answers one request.
    fn handle(&self, request: Request) -> Reply;
}

impl<F> Handler for F
where
    F: Fn(Request) -> Reply,
{
    fn handle(&self, request: Request) -> Reply {
        self(request)
    }
}

/// An asynchronous request handler for [`serve_async`]: any
/// `Fn(Request) -> impl Future<Output = Result<Vec<u8>, Failure>>`, or a typed
/// one made by [`typed_async`](super::typed_async).
pub trait AsyncHandler {
    /// The future of one answer.
    type Future: Future<Output = Reply>;

    /// Starts answering one request.
    fn handle(&self, request: Request) -> Self::Future;
}

impl<F, Fut> AsyncHandler for F
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Reply>,
{
    type Future = Fut;

    fn handle(&self, request: Request) -> Fut {
        self(request)
    }
}

/// Serves the pool's requests with a synchronous handler until EOF on stdin,
/// then returns `Ok(())` (return from `main`: the worker exits with status 0).
/// Requests are handled on the calling thread in arrival order.
///
/// # How it works
///
/// 1. **Stdout is taken over.** On first use, fd 1 is duplicated (close-on-exec)
///    for the protocol, and fd 1 itself is pointed at stderr: a stray
///    `println!` of the handler, of a library, or of a grandchild process lands
///    in the stderr tail the pool keeps instead of corrupting the frame stream.
/// 2. **Frames are read from stdin** in 64 KiB reads and decoded by
///    [`FrameDecoder::decode_message`] (long messages are joined from their
///    `Part` frames). `Control` frames install and release contexts in a map
///    that [`Request::context`] reads; a frame that installs a context always
///    precedes the requests made with it, so a handler never misses one.
/// 3. **Every request is acknowledged before it runs**: its `Started` frame is
///    written and flushed before the handler is called.
/// 4. **Answers are batched.** An answer is buffered and flushed when no further
///    request is waiting in what was read, or together with the next `Started`
///    frame; under pipelining many answers share one `write`.
/// 5. **A handler that panics** answers an `Error` frame of kind
///    [`FailureKind::Panicked`] carrying the panic message; the worker goes on
///    serving (the panic hook still prints to stderr).
/// 6. **At EOF** on stdin (the pool retiring the child, or shutting down), the
///    requests in flight are finished and answered, and the function returns
///    `Ok(())`: return from `main` to exit with status 0.
///
/// # Errors
///
/// An I/O error reading stdin or writing the protocol pipe (the parent went
/// away), or `InvalidData` when stdin carries something that is not frames.
///
/// # Examples
///
/// A worker program; [`ProcessPool::builder`](super::ProcessPool::builder)
/// starts it:
///
/// ```no_run
/// use vedart_executors::process::{Request, serve};
///
/// fn main() -> std::io::Result<()> {
///     serve(|request: Request| Ok(request.payload().to_ascii_uppercase()))
/// }
/// ```
pub fn serve(handler: impl Handler) -> io::Result<()> {
    let mut outbox = Outbox::take_stdout()?;
    let mut inbox = Inbox::new();
    let mut stdin = io::stdin().lock();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let read = match stdin.read(&mut chunk) {
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if read == 0 {
            inbox.finish()?;
            return outbox.flush();
        }
        for work in inbox.feed(&chunk[..read])? {
            match work {
                Work::Run(request) => {
                    let id = request.id;
                    outbox.started(id)?;
                    outbox.flush()?;
                    let reply = catch_unwind(AssertUnwindSafe(|| handler.handle(request)))
                        .unwrap_or_else(|panic| Err(panicked(&*panic)));
                    outbox.answer(id, reply)?;
                }
                Work::Reject(id, failure) => {
                    outbox.started(id)?;
                    outbox.answer(id, Err(failure))?;
                }
            }
        }
        // Nothing more was waiting in what was read: send the answers.
        outbox.flush()?;
    }
}

/// Serves the pool's requests with an asynchronous handler until EOF on stdin,
/// running the handler futures of all the requests in flight concurrently
/// (pipelined requests overlap), then returns `Ok(())` once every one was
/// answered. Poll it with any executor: `vedart::block_on`, a runtime's
/// `block_on`, or `futures::executor::block_on`; the handlers then run inside
/// that executor's context. Stdout, acknowledgements, batching, panics and EOF
/// are handled as [`serve`] describes; stdin is read on a thread of its own
/// (`veda-serve-stdin`).
///
/// # Errors
///
/// Those of [`serve`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use vedart_executors::process::{Request, serve_async};
///
/// fn main() -> std::io::Result<()> {
///     futures::executor::block_on(serve_async(|request: Request| async move {
///         vedart_reactor::sleep(Duration::from_millis(10)).await;
///         Ok(request.into_payload())
///     }))
/// }
/// ```
pub async fn serve_async<H: AsyncHandler>(handler: H) -> io::Result<()> {
    let mut outbox = Outbox::take_stdout()?;
    let mut intake = spawn_reader()?;
    let mut running = FuturesUnordered::new();
    let mut eof = false;
    let handler = &handler;
    futures::future::poll_fn(|cx| {
        loop {
            // Acknowledge every request that is waiting, in one write, before
            // any of them starts.
            let mut starting = Vec::new();
            while !eof {
                match intake.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(Work::Run(request)))) => {
                        outbox.started(request.id)?;
                        starting.push(request);
                    }
                    Poll::Ready(Some(Ok(Work::Reject(id, failure)))) => {
                        outbox.started(id)?;
                        outbox.answer(id, Err(failure))?;
                    }
                    Poll::Ready(Some(Err(err))) => return Poll::Ready(Err(err)),
                    Poll::Ready(None) => eof = true,
                    Poll::Pending => break,
                }
            }
            if !starting.is_empty() {
                outbox.flush()?;
            }
            for request in starting {
                running.push(run_async(handler, request));
            }
            let mut answered = false;
            while let Poll::Ready(Some((id, reply))) = running.poll_next_unpin(cx) {
                outbox.answer(id, reply)?;
                answered = true;
            }
            if !answered {
                break;
            }
            // Answers may have freed the handlers of requests that arrived
            // meanwhile; look once more before flushing.
        }
        outbox.flush()?;
        if eof && running.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// One request's handler future, with panics turned into failures.
async fn run_async<H: AsyncHandler>(handler: &H, request: Request) -> (u64, Reply) {
    let id = request.id;
    let reply = match catch_unwind(AssertUnwindSafe(|| handler.handle(request))) {
        Ok(future) => AssertUnwindSafe(future)
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(panicked(&*panic))),
        Err(panic) => Err(panicked(&*panic)),
    };
    (id, reply)
}

/// The failure for a handler's panic payload.
fn panicked(panic: &(dyn std::any::Any + Send)) -> Failure {
    let message = if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    };
    Failure::new(FailureKind::Panicked, message)
}

/// Reads stdin on the `veda-serve-stdin` thread and hands [`serve_async`] the
/// work it decodes; the stream ends at EOF.
fn spawn_reader() -> io::Result<mpsc::UnboundedReceiver<io::Result<Work>>> {
    let (sender, receiver) = mpsc::unbounded();
    // A plain std thread: a worker process is never part of a loom model.
    std::thread::Builder::new()
        .name("veda-serve-stdin".into())
        .spawn(move || {
            let mut inbox = Inbox::new();
            let mut stdin = io::stdin().lock();
            let mut chunk = vec![0u8; READ_CHUNK];
            loop {
                let read = match stdin.read(&mut chunk) {
                    Ok(0) => {
                        if let Err(err) = inbox.finish() {
                            let _ = sender.unbounded_send(Err(err));
                        }
                        return;
                    }
                    Ok(read) => read,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => {
                        let _ = sender.unbounded_send(Err(err));
                        return;
                    }
                };
                let works = match inbox.feed(&chunk[..read]) {
                    Ok(works) => works,
                    Err(err) => {
                        let _ = sender.unbounded_send(Err(err));
                        return;
                    }
                };
                for work in works {
                    if sender.unbounded_send(Ok(work)).is_err() {
                        // serve_async was dropped.
                        return;
                    }
                }
            }
        })?;
    Ok(receiver)
}

/// What the decoder found for the handler.
enum Work {
    /// A request to run.
    Run(Request),
    /// A request answered without running it (too large).
    Reject(u64, Failure),
}

/// The decoding half: frames in, work and context updates out.
struct Inbox {
    decoder: FrameDecoder,
    contexts: Contexts,
}

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            decoder: FrameDecoder::new(max_frame_size())
                .max_message_size(DEFAULT_MAX_MESSAGE_SIZE as u64),
            contexts: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Decodes what was read, applying control frames at once (so a context is
    /// in place before the requests behind it run).
    fn feed(&mut self, mut input: &[u8]) -> io::Result<Vec<Work>> {
        let mut works = Vec::new();
        while let Some(message) = self.decoder.decode_message(&mut input).map_err(invalid)? {
            match message {
                Message::Frame(frame) => match frame.kind {
                    FrameKind::Request => works.push(Work::Run(Request {
                        id: frame.id,
                        payload: frame.payload,
                        contexts: self.contexts.clone(),
                    })),
                    FrameKind::Control => self.control(frame.id, &frame.payload)?,
                    other => {
                        return Err(invalid(format!(
                            "the pool sent a frame of kind {other:?}, which only a worker sends"
                        )));
                    }
                },
                Message::TooLarge { id, len, max, .. } => works.push(Work::Reject(
                    id,
                    Failure::new(
                        FailureKind::BadRequest,
                        format!(
                            "a request of {len} bytes exceeds the worker's maximum message \
                             size of {max} bytes"
                        ),
                    ),
                )),
            }
        }
        Ok(works)
    }

    fn control(&mut self, id: u64, payload: &[u8]) -> io::Result<()> {
        let (op, data) = payload
            .split_first()
            .ok_or_else(|| invalid("an empty control frame"))?;
        match ControlOp::from_byte(*op) {
            Some(ControlOp::Install) => {
                lock(&self.contexts).insert(id, Arc::from(data));
            }
            Some(ControlOp::Release) => {
                lock(&self.contexts).remove(&id);
            }
            None => return Err(invalid(format!("an unknown control op {op}"))),
        }
        Ok(())
    }

    /// At EOF: the stream must end between frames.
    fn finish(&self) -> io::Result<()> {
        self.decoder.finish().map_err(invalid)
    }
}

fn invalid(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

/// The encoding half: answers into a buffer on the protocol pipe.
struct Outbox {
    out: BufWriter<File>,
    max_frame_size: usize,
    frame: Vec<u8>,
}

impl Outbox {
    /// The protocol pipe, with fd 1 pointed at stderr (step 1 of the module
    /// docs). Every call returns a writer on the same pipe.
    fn take_stdout() -> io::Result<Outbox> {
        let pipe = protocol_pipe()?.try_clone_to_owned()?;
        Ok(Outbox {
            out: BufWriter::with_capacity(READ_CHUNK, File::from(pipe)),
            max_frame_size: max_frame_size(),
            frame: Vec::new(),
        })
    }

    fn started(&mut self, id: u64) -> io::Result<()> {
        self.write(id, FrameKind::Started, &[])
    }

    fn answer(&mut self, id: u64, reply: Reply) -> io::Result<()> {
        match reply {
            Ok(payload) => self.write(id, FrameKind::Response, &payload),
            Err(failure) => self.write(id, FrameKind::Error, &failure.encode()),
        }
    }

    fn write(&mut self, id: u64, kind: FrameKind, payload: &[u8]) -> io::Result<()> {
        self.frame.clear();
        encode_message(id, kind, payload, self.max_frame_size, &mut self.frame)
            .map_err(io::Error::other)?;
        self.out.write_all(&self.frame)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The protocol's copy of fd 1, made once per process; fd 1 then writes to
/// stderr.
fn protocol_pipe() -> io::Result<BorrowedFd<'static>> {
    static PIPE: OnceLock<OwnedFd> = OnceLock::new();
    static TAKING: Mutex<()> = Mutex::new(());
    let _taking = lock(&TAKING);
    if let Some(pipe) = PIPE.get() {
        return Ok(pipe.as_fd());
    }
    // Whatever Rust's stdout buffered belongs before the switch.
    io::stdout().flush()?;
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) only creates a new descriptor; fd 1 stays open.
    let fd = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created by fcntl and nothing else owns it.
    let pipe = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: dup2 replaces fd 1 with a copy of fd 2; the protocol keeps its own copy.
    if unsafe { libc::dup2(2, 1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PIPE.get_or_init(|| pipe).as_fd())
}

/// The pool's maximum frame size, from `VEDART_MAX_FRAME_SIZE` (the pool sets
/// it in every child's environment).
fn max_frame_size() -> usize {
    std::env::var(MAX_FRAME_SIZE_ENV)
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|&size| size > 0)
        .unwrap_or(DEFAULT_MAX_FRAME_SIZE)
}

// The decoding and encoding halves against each other; the whole worker is
// tested against a real pool in tests/process_serve.rs.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::frame::Frame;

    #[test]
    fn failures_round_trip_through_their_wire_form() {
        let failure = Failure::new(FailureKind::Panicked, "boom");
        assert_eq!(failure.encode(), b"\x02boom");
        assert_eq!(Failure::decode(&failure.encode()), Some(failure));
        assert_eq!(Failure::decode(b""), None);
        assert_eq!(Failure::decode(b"\x09what"), None);
    }

    #[test]
    fn contexts_are_installed_before_the_requests_behind_them() {
        let mut wire = Vec::new();
        let mut install = vec![ControlOp::Install as u8];
        install.extend_from_slice(b"ctx");
        for frame in [
            Frame {
                id: 5,
                kind: FrameKind::Control,
                payload: install,
            },
            Frame {
                id: 1,
                kind: FrameKind::Request,
                payload: b"go".to_vec(),
            },
            Frame {
                id: 5,
                kind: FrameKind::Control,
                payload: vec![ControlOp::Release as u8],
            },
        ] {
            frame.encode_into(&mut wire).unwrap();
        }
        let mut inbox = Inbox::new();
        let (first, rest) = wire.split_at(20);
        assert!(inbox.feed(first).unwrap().is_empty());
        let works = inbox.feed(&rest[..rest.len() - HEADER_AND_OP]).unwrap();
        let [Work::Run(request)] = &works[..] else {
            panic!("one request expected");
        };
        assert_eq!(request.payload(), b"go");
        assert_eq!(request.context(5).as_deref(), Some(&b"ctx"[..]));
        assert!(
            inbox
                .feed(&rest[rest.len() - HEADER_AND_OP..])
                .unwrap()
                .is_empty()
        );
        assert_eq!(request.context(5), None, "released");
        inbox.finish().unwrap();
    }

    const HEADER_AND_OP: usize = crate::process::frame::HEADER_LEN + 1;

    #[test]
    fn a_stream_cut_inside_a_frame_is_an_error() {
        let mut wire = Vec::new();
        Frame {
            id: 1,
            kind: FrameKind::Request,
            payload: b"abc".to_vec(),
        }
        .encode_into(&mut wire)
        .unwrap();
        let mut inbox = Inbox::new();
        assert!(inbox.feed(&wire[..wire.len() - 1]).unwrap().is_empty());
        assert_eq!(
            inbox.finish().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let mut answer = Inbox::new();
        let mut wire = Vec::new();
        Frame {
            id: 1,
            kind: FrameKind::Response,
            payload: Vec::new(),
        }
        .encode_into(&mut wire)
        .unwrap();
        assert!(
            answer.feed(&wire).is_err(),
            "a Response is not for a worker"
        );
    }
}
