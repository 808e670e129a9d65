//! [`Builder`]: configures and starts a [`Runtime`], and [`BuildError`].

use std::fmt;
use std::io;
use std::sync::Arc as StdArc;
use std::thread;
use std::time::Duration;

use vedart_executors::blocking::BlockingPool;
use vedart_reactor::Reactor;

use crate::runtime::{Handle, Runtime};
use crate::scheduler::idle::MAX_WORKERS;
use crate::scheduler::{Flavor, Shared, worker};

/// Environment variable that overrides the default worker count of
/// multi-thread runtimes (an explicit [`Builder::worker_threads`] wins).
/// Values are clamped to `1..=32767`; an unparsable value is ignored.
pub const WORKER_THREADS_ENV: &str = "VEDART_WORKER_THREADS";

/// Default name prefix of worker threads: `veda-worker-0`, `veda-worker-1`, ...
pub const DEFAULT_THREAD_NAME: &str = "veda-worker";

type Callback = StdArc<dyn Fn() + Send + Sync + 'static>;

/// Configures a [`Runtime`].
///
/// # Examples
///
#[doc = example!()]
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let started = Arc::new(AtomicUsize::new(0));
/// let counter = started.clone();
/// let rt = vedart::Builder::new_multi_thread()
///     .worker_threads(2)
///     .thread_name("my-pool")
///     .on_thread_start(move || {
///         counter.fetch_add(1, Ordering::SeqCst);
///     })
///     .build()
///     .unwrap();
/// let name = rt.block_on(rt.spawn(async {
///     std::thread::current().name().map(str::to_owned)
/// }));
/// assert!(name.unwrap().unwrap().starts_with("my-pool-"));
/// drop(rt);
/// assert_eq!(started.load(Ordering::SeqCst), 2);
/// ```
pub struct Builder {
    flavor: Flavor,
    /// The deterministic flavour's seed.
    seed: Option<u64>,
    worker_threads: Option<usize>,
    thread_name: String,
    thread_stack_size: Option<usize>,
    on_thread_start: Option<Callback>,
    on_thread_stop: Option<Callback>,
    min_blocking_threads: Option<usize>,
    max_blocking_threads: Option<usize>,
    blocking_keep_alive: Option<Duration>,
}

impl Builder {
    /// A runtime with a pool of worker threads that steal work from each other.
    pub fn new_multi_thread() -> Builder {
        Builder::with_flavor(Flavor::MultiThread)
    }

    /// A runtime that starts no threads: every task runs on the thread inside
    /// [`Runtime::block_on`], which also drives the reactor. Tasks spawned
    /// while no `block_on` runs wait for the next one.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// let rt = vedart::Builder::new_current_thread().build().unwrap();
    /// let here = std::thread::current().id();
    /// let there = rt.block_on(rt.spawn(async { std::thread::current().id() }));
    /// assert_eq!(there.unwrap(), here);
    /// ```
    pub fn new_current_thread() -> Builder {
        Builder::with_flavor(Flavor::CurrentThread)
    }

    /// A deterministic runtime: every task runs on the thread inside
    /// [`Runtime::block_on`]; the next task to poll is drawn from every
    /// runnable one by a PCG generator seeded from `seed`; and timers run on a
    /// virtual clock that jumps to the next deadline whenever every task is
    /// idle, so a program full of sleeps and timeouts runs instantly.
    ///
    /// Same seed, same program: the same interleaving, the same
    /// [`Runtime::schedule_trace`] and the same outputs, run after run.
    /// Different seeds explore different interleavings, which is how a test
    /// finds the order that breaks an invariant, and then replays it. The
    /// algorithm and its limits (real I/O, other threads, `spawn_blocking`)
    /// are in `src/scheduler/deterministic/README.md`.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// use std::time::{Duration, Instant};
    ///
    /// let rt = vedart::Builder::new_deterministic(42).build().unwrap();
    /// let started = Instant::now();
    /// let timed_out = rt.block_on(async {
    ///     let never = std::future::pending::<()>();
    ///     vedart::time::timeout(Duration::from_secs(3600), never).await.is_err()
    /// });
    /// assert!(timed_out);
    /// // An hour of virtual time, no real wait.
    /// assert!(started.elapsed() < Duration::from_secs(60));
    /// assert_eq!(rt.seed(), Some(42));
    /// ```
    pub fn new_deterministic(seed: u64) -> Builder {
        let mut builder = Builder::with_flavor(Flavor::Deterministic);
        builder.seed = Some(seed);
        builder
    }

    fn with_flavor(flavor: Flavor) -> Builder {
        Builder {
            flavor,
            seed: None,
            worker_threads: None,
            thread_name: DEFAULT_THREAD_NAME.to_owned(),
            thread_stack_size: None,
            on_thread_start: None,
            on_thread_stop: None,
            min_blocking_threads: None,
            max_blocking_threads: None,
            blocking_keep_alive: None,
        }
    }

    /// Number of worker threads (multi-thread flavour; ignored by the
    /// current-thread and deterministic flavours). Defaults to `VEDART_WORKER_THREADS` if set, else
    /// the number of available cores. Zero is rejected by [`Builder::build`].
    pub fn worker_threads(&mut self, count: usize) -> &mut Builder {
        self.worker_threads = Some(count);
        self
    }

    /// Name prefix of worker threads; worker `i` is named `{name}-{i}`.
    /// Defaults to [`DEFAULT_THREAD_NAME`].
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Builder {
        self.thread_name = name.into();
        self
    }

    /// Stack size of worker threads, in bytes. Defaults to Rust's default.
    pub fn thread_stack_size(&mut self, bytes: usize) -> &mut Builder {
        self.thread_stack_size = Some(bytes);
        self
    }

    /// Runs `f` on each worker thread as it starts, before it runs any task.
    pub fn on_thread_start(&mut self, f: impl Fn() + Send + Sync + 'static) -> &mut Builder {
        self.on_thread_start = Some(StdArc::new(f));
        self
    }

    /// Runs `f` on each worker thread as it stops, after its last task.
    pub fn on_thread_stop(&mut self, f: impl Fn() + Send + Sync + 'static) -> &mut Builder {
        self.on_thread_stop = Some(StdArc::new(f));
        self
    }

    /// Blocking-pool threads kept alive even when idle (see
    /// [`spawn_blocking`](crate::spawn_blocking)). Default 0: threads start on
    /// demand.
    pub fn min_blocking_threads(&mut self, count: usize) -> &mut Builder {
        self.min_blocking_threads = Some(count);
        self
    }

    /// Most blocking-pool threads alive at once; closures beyond that wait in
    /// the pool's queue. Default 512 (or `VEDA_MAX_BLOCKING_THREADS`).
    pub fn max_blocking_threads(&mut self, count: usize) -> &mut Builder {
        self.max_blocking_threads = Some(count);
        self
    }

    /// How long an idle blocking thread above the pool's target size waits for
    /// work before it exits. Default 10 s.
    pub fn blocking_keep_alive(&mut self, keep_alive: Duration) -> &mut Builder {
        self.blocking_keep_alive = Some(keep_alive);
        self
    }

    fn build_blocking_pool(&self) -> Result<BlockingPool, BuildError> {
        let mut pool = BlockingPool::builder();
        if let Some(min) = self.min_blocking_threads {
            pool = pool.min_workers(min);
        }
        if let Some(max) = self.max_blocking_threads {
            pool = pool.max_workers(max);
        }
        if let Some(keep_alive) = self.blocking_keep_alive {
            pool = pool.keep_alive(keep_alive);
        }
        if let Some(bytes) = self.thread_stack_size {
            pool = pool.stack_size(bytes);
        }
        pool.build().map_err(|err| {
            let field = match err.field() {
                "min_workers" => "min_blocking_threads",
                _ => "max_blocking_threads",
            };
            BuildError::invalid(field, err.to_string())
        })
    }

    /// Starts the runtime.
    ///
    /// # Errors
    ///
    /// An invalid setting ([`BuildError::field`] names it): zero or more than
    /// 32767 `worker_threads`, a zero `thread_stack_size`, a `thread_name`
    /// containing a NUL byte, zero `max_blocking_threads` or
    /// `min_blocking_threads` above it. Or the OS refused the reactor or a thread
    /// ([`BuildError::is_io`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let err = vedart::Builder::new_multi_thread()
    ///     .worker_threads(0)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), Some("worker_threads"));
    /// ```
    pub fn build(&mut self) -> Result<Runtime, BuildError> {
        let workers = match self.flavor {
            Flavor::CurrentThread | Flavor::Deterministic => {
                if self.worker_threads == Some(0) {
                    return Err(BuildError::invalid(
                        "worker_threads",
                        "must be at least 1 (got 0)",
                    ));
                }
                1
            }
            Flavor::MultiThread => self.multi_thread_workers()?,
        };
        if self.thread_stack_size == Some(0) {
            return Err(BuildError::invalid(
                "thread_stack_size",
                "must be more than 0 bytes",
            ));
        }
        if self.thread_name.contains('\0') {
            return Err(BuildError::invalid(
                "thread_name",
                "must not contain a NUL byte",
            ));
        }
        let blocking = self.build_blocking_pool()?;
        let reactor = if self.flavor == Flavor::Deterministic {
            Reactor::with_virtual_clock()
        } else {
            Reactor::new()
        }
        .map_err(BuildError::io)?;
        let (shared, cores) = Shared::new(self.flavor, workers, reactor, blocking, self.seed);
        #[cfg(not(feature = "loom"))]
        crate::telemetry::register(&shared);
        let handle = Handle::from_shared(shared.clone());
        if self.flavor.is_single_threaded() {
            crate::sync_facade::lock(&shared.core_slot).core = cores.into_iter().next();
            return Ok(Runtime::from_parts(handle, Vec::new()));
        }
        let mut threads = Vec::with_capacity(workers);
        for (index, core) in cores.into_iter().enumerate() {
            match self.spawn_worker(&shared, index, core) {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    // Shut down what started; the runtime's drop joins them.
                    drop(Runtime::from_parts(handle, threads));
                    return Err(BuildError::io(err));
                }
            }
        }
        Ok(Runtime::from_parts(handle, threads))
    }

    fn multi_thread_workers(&self) -> Result<usize, BuildError> {
        match self.worker_threads {
            Some(0) => Err(BuildError::invalid(
                "worker_threads",
                "must be at least 1 (got 0)",
            )),
            Some(count) if count > MAX_WORKERS => Err(BuildError::invalid(
                "worker_threads",
                format!("must be at most {MAX_WORKERS} (got {count})"),
            )),
            Some(count) => Ok(count),
            None => Ok(
                worker_threads_from_env(std::env::var(WORKER_THREADS_ENV).ok().as_deref())
                    .unwrap_or_else(default_worker_threads),
            ),
        }
    }

    fn spawn_worker(
        &self,
        shared: &crate::sync_facade::Arc<Shared>,
        index: usize,
        core: worker::Core,
    ) -> io::Result<thread::JoinHandle<()>> {
        let mut builder = thread::Builder::new().name(format!("{}-{index}", self.thread_name));
        if let Some(bytes) = self.thread_stack_size {
            builder = builder.stack_size(bytes);
        }
        let shared = shared.clone();
        let on_start = self.on_thread_start.clone();
        let on_stop = self.on_thread_stop.clone();
        shared.worker_started();
        let spawned = builder.spawn({
            let shared = shared.clone();
            move || {
                // Counts the thread out even if a callback panics.
                struct Exit(crate::sync_facade::Arc<Shared>);
                impl Drop for Exit {
                    fn drop(&mut self) {
                        self.0.worker_exited();
                    }
                }
                let _exit = Exit(shared.clone());
                if let Some(f) = on_start {
                    f();
                }
                worker::run_worker(shared, index, core);
                if let Some(f) = on_stop {
                    f();
                }
            }
        });
        if spawned.is_err() {
            shared.worker_exited();
        }
        spawned
    }
}

/// Parses a worker-count override, clamping it to `1..=32767`.
fn worker_threads_from_env(value: Option<&str>) -> Option<usize> {
    let count: usize = value?.trim().parse().ok()?;
    Some(count.clamp(1, MAX_WORKERS))
}

fn default_worker_threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS))
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("flavor", &self.flavor)
            .field("seed", &self.seed)
            .field("worker_threads", &self.worker_threads)
            .field("thread_name", &self.thread_name)
            .field("thread_stack_size", &self.thread_stack_size)
            .field("on_thread_start", &self.on_thread_start.is_some())
            .field("on_thread_stop", &self.on_thread_stop.is_some())
            .finish()
    }
}

/// Why [`Builder::build`] failed: an invalid setting, or the OS refused a
/// resource.
pub struct BuildError {
    kind: ErrorKind,
}

enum ErrorKind {
    Invalid { field: &'static str, reason: String },
    Io(io::Error),
}

impl BuildError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> BuildError {
        BuildError {
            kind: ErrorKind::Invalid {
                field,
                reason: reason.into(),
            },
        }
    }

    fn io(err: io::Error) -> BuildError {
        BuildError {
            kind: ErrorKind::Io(err),
        }
    }

    /// The builder setting that was invalid, such as `"worker_threads"`.
    pub fn field(&self) -> Option<&'static str> {
        match &self.kind {
            ErrorKind::Invalid { field, .. } => Some(field),
            ErrorKind::Io(_) => None,
        }
    }

    /// Whether a setting was invalid.
    pub fn is_invalid_config(&self) -> bool {
        matches!(self.kind, ErrorKind::Invalid { .. })
    }

    /// Whether the OS refused a resource (an epoll instance, a thread).
    pub fn is_io(&self) -> bool {
        matches!(self.kind, ErrorKind::Io(_))
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Invalid { field, reason } => {
                write!(f, "invalid runtime configuration: `{field}` {reason}")
            }
            ErrorKind::Io(err) => write!(f, "cannot start the runtime: {err}"),
        }
    }
}

impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Invalid { field, reason } => f
                .debug_struct("BuildError::Invalid")
                .field("field", field)
                .field("reason", reason)
                .finish(),
            ErrorKind::Io(err) => f.debug_tuple("BuildError::Io").field(err).finish(),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Invalid { .. } => None,
            ErrorKind::Io(err) => Some(err),
        }
    }
}

impl From<BuildError> for io::Error {
    fn from(err: BuildError) -> io::Error {
        match err.kind {
            ErrorKind::Io(err) => err,
            ErrorKind::Invalid { .. } => io::Error::new(io::ErrorKind::InvalidInput, err),
        }
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use super::*;

    #[test]
    fn env_override_parses_and_clamps() {
        assert_eq!(worker_threads_from_env(None), None);
        assert_eq!(worker_threads_from_env(Some("4")), Some(4));
        assert_eq!(worker_threads_from_env(Some(" 8\n")), Some(8));
        assert_eq!(worker_threads_from_env(Some("0")), Some(1));
        assert_eq!(worker_threads_from_env(Some("1000000")), Some(MAX_WORKERS));
        assert_eq!(worker_threads_from_env(Some("-3")), None);
        assert_eq!(worker_threads_from_env(Some("lots")), None);
        assert_eq!(worker_threads_from_env(Some("")), None);
    }
}
