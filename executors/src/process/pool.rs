//! [`ProcessPool`]: warm child processes that answer framed requests.
//!
//! # Implementation
//!
//! The pool has `workers` slots; each holds one child (`Live`), or is starting
//! one (`Spawning`), or remembers why it could not (`Failed`). A child is driven
//! by one task, its [`ConnDriver`], run by the pool's spawner: the runtime's
//! when the runtime builds the pool, otherwise the `veda-process` background
//! thread (see `background`). Calls write their frames themselves and wait for
//! the driver to complete them (see `call` and `conn`).
//!
//! Children are started eagerly: [`ProcessPoolBuilder::build`] starts all of
//! them before returning, so that the first call finds a warm child, and
//! fails fast when the program cannot be started. Replacements are started as
//! soon as a child dies, is terminated or retires, so the pool stays warm; a
//! child that dies without answering anything delays its replacement (10 ms,
//! doubling up to 1 s) so that a crashing program does not spin.
//!
//! # Shutdown
//!
//! - [`ProcessPool::shutdown`] is graceful: new calls fail with `PoolClosed`,
//!   calls in flight finish, then each child's stdin is closed (a worker exits
//!   on EOF), with SIGTERM after the grace period and SIGKILL after another.
//!   It resolves once every child is reaped.
//! - Dropping the pool is immediate: calls in flight fail with `PoolClosed`,
//!   every child gets SIGTERM, and the drop waits (blocking, at most the grace
//!   period) for them to exit, then SIGKILLs and reaps the rest. No zombie is
//!   left when `drop` returns, also when the drop happens during a panic.
//! - Children also die with the parent process (`PR_SET_PDEATHSIG`), so a
//!   crashed parent leaves no orphans.
//!
//! # `fork()`
//!
//! A copy of the process made by `fork()` (Python's multiprocessing does that)
//! inherits the pool object but not its children nor the threads that drive
//! them. There, calls fail with `PoolClosed` at once and dropping the pool does
//! nothing: the children still belong to the original process.

use crate::sync::unmodelled::Arc;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use vedart_reactor::Reactor;

use super::background;
use super::builder::{ProcessPoolBuilder, Settings};
use super::call::{Broadcast, Call, Context};
use super::conn::{Conn, End, Phase};
use super::driver::ConnDriver;
use super::error::ProcessError;
use super::stats::{Counters, PoolStats, WorkerState, WorkerStats};
use super::sys::{RawChild, SpawnConfig, spawn_pool_child_async, spawn_pool_child_blocking};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{Mutex, lock};

/// Default maximum payload of one frame: 256 MiB. Longer payloads travel as
/// several frames (see [`frame`](super::frame)).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 256 * 1024 * 1024;
/// Default maximum size of one request or answer, however many frames it
/// takes: 4 GiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 << 30;
/// The environment variable that tells every child the pool's maximum frame
/// size, so that it splits longer answers into `Part` frames.
pub const MAX_FRAME_SIZE_ENV: &str = "VEDART_MAX_FRAME_SIZE";
/// Default time between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(1);
/// First delay before replacing a child that died without answering anything.
const RESPAWN_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest such delay.
const RESPAWN_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A boxed future handed to a [`Spawner`].
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs the pool's background futures (one per child) to completion. The
/// runtime passes its own; see [`ProcessPoolBuilder::spawner`].
pub type Spawner = Arc<dyn Fn(BoxFuture) + Send + Sync + 'static>;

/// State shared by the pool handle, its calls and its drivers.
pub(crate) struct PoolShared {
    config: Arc<SpawnConfig>,
    workers: usize,
    max_tasks_per_child: Option<u64>,
    max_frame_size: usize,
    max_message_size: usize,
    grace_period: Duration,
    forward_stderr: bool,
    /// Default of [`Call::retries`].
    retries: u32,
    /// Default of [`Call::timeout`].
    call_timeout: Option<Duration>,
    spawner: Spawner,
    /// The reactor the children's pipes and pidfds are registered with.
    reactor: Reactor,
    /// The process that built the pool. A `fork()` copy of it (Python's
    /// multiprocessing) must not touch the pool: its children are not the
    /// copy's, and the threads that drive them (and may hold its locks) do not
    /// exist there.
    owner: u32,
    /// Source of request ids, context ids, child ids and waiter keys.
    next_id: AtomicU64,
    pub(crate) stats: Arc<Counters>,
    state: Mutex<PoolState>,
}

struct PoolState {
    closed: bool,
    slots: Vec<Slot>,
    /// Every child not yet reaped: live, retiring and terminating ones.
    conns: Vec<Arc<Conn>>,
    /// Calls waiting for a child, by call key.
    waiters: HashMap<u64, Waker>,
    /// `shutdown` futures waiting for the last child to be reaped.
    shutdown_waiters: Vec<Waker>,
}

struct Slot {
    state: SlotState,
    /// Children in a row that died without answering anything.
    failures: u32,
}

enum SlotState {
    Live(Arc<Conn>),
    Spawning,
    Failed(Arc<io::Error>),
}

/// What the dispatcher found for a call.
pub(crate) enum Dispatch {
    Conn(Arc<Conn>),
    Wait,
    Fail(ProcessError),
}

impl PoolShared {
    pub(crate) fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    pub(crate) fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    pub(crate) fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    pub(crate) fn max_tasks_per_child(&self) -> Option<u64> {
        self.max_tasks_per_child
    }

    pub(crate) fn grace_period(&self) -> Duration {
        self.grace_period
    }

    pub(crate) fn forward_stderr(&self) -> bool {
        self.forward_stderr
    }

    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }

    pub(crate) fn call_timeout(&self) -> Option<Duration> {
        self.call_timeout
    }

    /// Whether this is the process that built the pool (not a `fork()` copy).
    pub(crate) fn is_owner(&self) -> bool {
        std::process::id() == self.owner
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Every child not yet reaped.
    pub(crate) fn conns(&self) -> Vec<Arc<Conn>> {
        lock(&self.state).conns.clone()
    }

    /// Picks the accepting child with the fewest calls in flight.
    pub(crate) fn pick(self: &Arc<Self>, key: u64, waker: &Waker) -> Dispatch {
        let mut respawn = Vec::new();
        let result = {
            let mut state = lock(&self.state);
            if state.closed {
                state.waiters.remove(&key);
                return Dispatch::Fail(ProcessError::pool_closed());
            }
            let best = state
                .slots
                .iter()
                .filter_map(|slot| match &slot.state {
                    SlotState::Live(conn) if conn.is_accepting() => Some(conn),
                    _ => None,
                })
                .min_by_key(|conn| conn.in_flight.load(Ordering::Relaxed))
                .cloned();
            if let Some(conn) = best {
                state.waiters.remove(&key);
                Dispatch::Conn(conn)
            } else if state
                .slots
                .iter()
                .any(|slot| !matches!(slot.state, SlotState::Failed(_)))
            {
                // Some child is starting (or a live one is about to be replaced).
                match state.waiters.get(&key) {
                    Some(existing) if existing.will_wake(waker) => {}
                    _ => {
                        state.waiters.insert(key, waker.clone());
                    }
                }
                Dispatch::Wait
            } else {
                // Every slot failed to start a child: report the error, and try
                // again for the calls that come next.
                state.waiters.remove(&key);
                let mut error = None;
                for (index, slot) in state.slots.iter_mut().enumerate() {
                    if let SlotState::Failed(err) = &slot.state {
                        error.get_or_insert_with(|| err.clone());
                        slot.state = SlotState::Spawning;
                        respawn.push((index, Duration::ZERO));
                    }
                }
                Dispatch::Fail(ProcessError::spawn(error.unwrap_or_else(|| {
                    Arc::new(io::Error::other("no worker process could be started"))
                })))
            }
        };
        for (slot, delay) in respawn {
            self.start_spawn(slot, delay);
        }
        result
    }

    /// Removes a call from the waiter list.
    pub(crate) fn forget_waiter(&self, key: u64) {
        lock(&self.state).waiters.remove(&key);
    }

    /// Starts a replacement for child `conn_id` in `slot`, if it is still the
    /// slot's child (it stopped accepting: retired or terminating).
    pub(crate) fn replace(self: &Arc<Self>, slot: usize, conn_id: u64) {
        let start = {
            let mut state = lock(&self.state);
            if state.closed {
                return;
            }
            match state.slots.get_mut(slot) {
                Some(entry) if matches!(&entry.state, SlotState::Live(conn) if conn.id == conn_id) =>
                {
                    entry.state = SlotState::Spawning;
                    true
                }
                _ => false,
            }
        };
        if start {
            self.start_spawn(slot, Duration::ZERO);
        }
    }

    /// A child's driver finished: the child is reaped. Replaces it if it was
    /// still its slot's child.
    pub(crate) fn conn_finished(self: &Arc<Self>, conn: &Arc<Conn>, died_on_its_own: bool) {
        let mut respawn = None;
        let shutdown_waiters = {
            let mut state = lock(&self.state);
            state.conns.retain(|c| c.id != conn.id);
            let closed = state.closed;
            if let Some(slot) = state.slots.get_mut(conn.slot) {
                if let SlotState::Live(current) = &slot.state {
                    if current.id == conn.id {
                        if died_on_its_own && conn.completed.load(Ordering::Relaxed) == 0 {
                            slot.failures = slot.failures.saturating_add(1);
                        } else {
                            slot.failures = 0;
                        }
                        if closed {
                            slot.state = SlotState::Failed(Arc::new(io::Error::other(
                                "the process pool is shut down",
                            )));
                        } else {
                            slot.state = SlotState::Spawning;
                            respawn = Some(backoff(slot.failures));
                        }
                    }
                }
            }
            if state.conns.is_empty() && closed {
                std::mem::take(&mut state.shutdown_waiters)
            } else {
                Vec::new()
            }
        };
        if let Some(delay) = respawn {
            self.start_spawn(conn.slot, delay);
        }
        for waker in shutdown_waiters {
            waker.wake();
        }
    }

    /// Starts a child for `slot` in the background, after `delay`.
    fn start_spawn(self: &Arc<Self>, slot: usize, delay: Duration) {
        let pool = self.clone();
        (self.spawner)(Box::pin(async move {
            if !delay.is_zero() {
                let sleep = {
                    let _enter = pool.reactor.enter();
                    vedart_reactor::sleep(delay)
                };
                sleep.await;
            }
            let result = match spawn_pool_child_async(pool.config.clone()).await {
                Ok(result) => result,
                Err(_) => Err(io::Error::other(
                    "the veda-process-spawn thread dropped the request",
                )),
            };
            if let Some(driver) = pool.install(slot, result, true) {
                driver.await;
            }
        }));
    }

    /// Puts a started child (or the error) into `slot` and wakes waiting calls.
    /// Returns the child's driver, to be run by the caller.
    fn install(
        self: &Arc<Self>,
        slot: usize,
        result: io::Result<RawChild>,
        respawn: bool,
    ) -> Option<ConnDriver> {
        let started = result.and_then(|raw| Conn::new(raw, self.next_id(), slot, self));
        // A child that arrives after the pool closed is dropped (its driver's
        // drop kills and reaps it) only after the lock is released: the
        // driver's drop takes the lock again.
        let mut rejected = None;
        let (driver, waiters) = {
            let mut state = lock(&self.state);
            let driver = match started {
                Ok(started) if state.closed => {
                    rejected = Some(started);
                    None
                }
                Ok((conn, driver)) => {
                    self.stats.spawned.fetch_add(1, Ordering::Relaxed);
                    if respawn {
                        self.stats.respawns.fetch_add(1, Ordering::Relaxed);
                    }
                    state.conns.push(conn.clone());
                    if let Some(entry) = state.slots.get_mut(slot) {
                        entry.state = SlotState::Live(conn);
                    }
                    Some(driver)
                }
                Err(err) => {
                    if let Some(entry) = state.slots.get_mut(slot) {
                        entry.state = SlotState::Failed(Arc::new(err));
                    }
                    None
                }
            };
            let waiters: Vec<Waker> = state.waiters.values().cloned().collect();
            (driver, waiters)
        };
        drop(rejected);
        for waker in waiters {
            waker.wake();
        }
        driver
    }

    /// Drops the pool: see the module documentation.
    fn close_now(self: &Arc<Self>) {
        let (conns, waiters) = {
            let mut state = lock(&self.state);
            state.closed = true;
            for slot in &mut state.slots {
                slot.state =
                    SlotState::Failed(Arc::new(io::Error::other("the process pool is shut down")));
            }
            let waiters: Vec<Waker> = state.waiters.drain().map(|(_, waker)| waker).collect();
            (state.conns.clone(), waiters)
        };
        for waker in waiters {
            waker.wake();
        }
        for conn in &conns {
            conn.terminate(self, End::Closed, libc::SIGTERM);
        }
        let deadline = Instant::now() + self.grace_period;
        let mut pause = Duration::from_micros(100);
        for conn in &conns {
            while conn.proc.try_reap().is_none() {
                if Instant::now() >= deadline {
                    conn.proc.signal(libc::SIGKILL);
                    conn.proc.reap_blocking();
                    break;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    }

    /// Starts a graceful shutdown: see the module documentation.
    fn begin_shutdown(&self) {
        let (conns, waiters) = {
            let mut state = lock(&self.state);
            state.closed = true;
            let waiters: Vec<Waker> = state.waiters.drain().map(|(_, waker)| waker).collect();
            (state.conns.clone(), waiters)
        };
        for waker in waiters {
            waker.wake();
        }
        for conn in conns {
            conn.retire();
        }
    }
}

/// Delay before replacing a child after `failures` children in a row died
/// without answering anything.
fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    RESPAWN_BACKOFF_MIN
        .saturating_mul(1u32 << (failures - 1).min(16))
        .min(RESPAWN_BACKOFF_MAX)
}

/// A pool of warm child processes that answer length-prefixed request frames
/// on their stdin/stdout. See the [module documentation](super) for the
/// protocol and `README.md` beside this file for the wire format.
///
/// # Examples
///
/// ```no_run
/// use vedart_executors::process::ProcessPool;
///
/// # futures::executor::block_on(async {
/// let pool = ProcessPool::builder("python3")
///     .args(["-m", "vedart._worker"])
///     .workers(4)
///     .build()?;
/// let answer = pool.call(b"request".to_vec()).await?;
/// # let _ = answer;
/// # Ok::<(), vedart_executors::process::ProcessError>(())
/// # });
/// ```
pub struct ProcessPool {
    shared: Arc<PoolShared>,
}

impl fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPool")
            .field("program", &self.shared.config.program)
            .field("workers", &self.shared.workers)
            .field("pids", &self.pids())
            .finish()
    }
}

impl ProcessPool {
    /// Starts configuring a pool whose children run `program`.
    pub fn builder(program: impl AsRef<OsStr>) -> ProcessPoolBuilder {
        ProcessPoolBuilder::new(program)
    }

    /// Sends `request` to the least-loaded child and resolves to its answer.
    ///
    /// Requests are pipelined: a child may have several in flight, answered in
    /// any order. Dropping the returned future cancels the call (see [`Call`]).
    ///
    /// # Errors
    ///
    /// The future resolves to a [`ProcessError`]: `TooLarge` for a request or
    /// an answer over the maximum message size, `Remote` when the child answered with an error
    /// frame, `WorkerDied` when it died first, `Interrupted` when it was
    /// running on a child terminated for another call's cancellation (see
    /// [`Call`], "At most once"), `Protocol` when the child broke the protocol,
    /// `Spawn` when no child could be started, `PoolClosed` after shutdown,
    /// `Cancelled` through a [`CancelHandle`](super::CancelHandle), `TimedOut`
    /// past [`Call::timeout`].
    pub fn call(&self, request: impl Into<Vec<u8>>) -> Call {
        Call::new(self.shared.clone(), request.into(), None, None)
    }

    /// Like [`ProcessPool::call`], making sure the child that runs the request
    /// has received `context` first; see [`Context`].
    ///
    /// # Panics
    ///
    /// Panics if `context` was created by another pool.
    pub fn call_with(&self, context: &Context, request: impl Into<Vec<u8>>) -> Call {
        assert!(
            context.belongs_to(&self.shared),
            "vedart: a process-pool context was used with another pool"
        );
        Call::new(
            self.shared.clone(),
            request.into(),
            Some(context.clone()),
            None,
        )
    }

    /// Registers bytes to be installed once in each child that runs a call
    /// made with them ([`ProcessPool::call_with`]).
    ///
    /// # Errors
    ///
    /// `TooLarge` if the payload (plus its one-byte control op) exceeds the
    /// maximum message size.
    pub fn context(&self, payload: impl Into<Vec<u8>>) -> Result<Context, ProcessError> {
        let payload = payload.into();
        if payload.len() >= self.shared.max_message_size {
            return Err(ProcessError::too_large(
                payload.len() + 1,
                self.shared.max_message_size,
            ));
        }
        Ok(Context::new(
            self.shared.clone(),
            self.shared.next_id(),
            payload,
        ))
    }

    /// Sends `request` to every child that is accepting calls now, and resolves
    /// to each child's answer. Children started later do not get it (use a
    /// [`Context`] for that).
    pub fn broadcast(&self, request: impl Into<Vec<u8>>) -> Broadcast {
        let request = request.into();
        let targets: Vec<Arc<Conn>> = {
            let state = lock(&self.shared.state);
            state
                .slots
                .iter()
                .filter_map(|slot| match &slot.state {
                    SlotState::Live(conn) if conn.is_accepting() => Some(conn.clone()),
                    _ => None,
                })
                .collect()
        };
        Broadcast::new(
            targets
                .into_iter()
                .map(|conn| {
                    let pid = conn.pid();
                    let call = Call::new(self.shared.clone(), request.clone(), None, Some(conn));
                    (pid, call)
                })
                .collect(),
        )
    }

    /// The pids of the children currently in the slots (live ones).
    pub fn pids(&self) -> Vec<u32> {
        let state = lock(&self.shared.state);
        state
            .slots
            .iter()
            .filter_map(|slot| match &slot.state {
                SlotState::Live(conn) => Some(conn.pid()),
                _ => None,
            })
            .collect()
    }

    /// The number of slots (children the pool keeps).
    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// The maximum payload of one frame.
    pub fn max_frame_size(&self) -> usize {
        self.shared.max_frame_size
    }

    /// The maximum size of one request or answer, however many frames it takes.
    pub fn max_message_size(&self) -> usize {
        self.shared.max_message_size
    }

    /// A snapshot of the pool's children and counters, for telemetry.
    pub fn stats(&self) -> PoolStats {
        let conns = self.shared.conns();
        let counters = &self.shared.stats;
        PoolStats {
            workers: conns
                .iter()
                .map(|conn| WorkerStats {
                    pid: conn.pid(),
                    state: match conn.phase() {
                        Phase::Live => WorkerState::Live,
                        Phase::Retiring => WorkerState::Retiring,
                        Phase::Terminating(_) | Phase::Dead => WorkerState::Terminating,
                    },
                    in_flight: conn.in_flight.load(Ordering::Relaxed),
                    tasks_sent: conn.tasks_sent.load(Ordering::Relaxed),
                    completed: conn.completed.load(Ordering::Relaxed),
                    uptime: conn.started.elapsed(),
                })
                .collect(),
            spawned: counters.spawned.load(Ordering::Relaxed),
            respawns: counters.respawns.load(Ordering::Relaxed),
            bytes_sent: counters.bytes_sent.load(Ordering::Relaxed),
            bytes_received: counters.bytes_received.load(Ordering::Relaxed),
            calls_ok: counters.calls_ok.load(Ordering::Relaxed),
            calls_failed: counters.calls_failed.load(Ordering::Relaxed),
        }
    }

    /// Shuts the pool down gracefully and resolves once every child is reaped:
    /// see the module documentation. New calls fail with `PoolClosed` from now on.
    pub fn shutdown(&self) -> Shutdown {
        self.shared.begin_shutdown();
        Shutdown {
            shared: self.shared.clone(),
        }
    }

    /// Starts every child of a new pool; see [`ProcessPoolBuilder::build`].
    pub(crate) fn start(settings: Settings) -> Result<ProcessPool, ProcessError> {
        let spawn_error = |err: io::Error| ProcessError::spawn(Arc::new(err));
        let (spawner, reactor): (Spawner, Reactor) = match (settings.spawner, settings.reactor) {
            (Some(spawner), reactor) => (spawner, reactor.unwrap_or_else(Reactor::current)),
            (None, reactor) => {
                let default_reactor = background::reactor().map_err(spawn_error)?;
                let spawner: Spawner = Arc::new(|future| {
                    if let Err(err) = background::spawn(future) {
                        eprintln!("vedart: cannot run a process-pool task: {err}");
                    }
                });
                (spawner, reactor.unwrap_or(default_reactor))
            }
        };
        let mut config = settings.config;
        config.env.push((
            MAX_FRAME_SIZE_ENV.into(),
            Some(settings.max_frame_size.to_string().into()),
        ));
        let shared = Arc::new(PoolShared {
            config: Arc::new(config),
            workers: settings.workers,
            max_tasks_per_child: settings.max_tasks_per_child,
            max_frame_size: settings.max_frame_size,
            max_message_size: settings.max_message_size,
            grace_period: settings.grace_period,
            forward_stderr: settings.forward_stderr,
            retries: settings.retries,
            call_timeout: settings.call_timeout,
            spawner,
            reactor,
            owner: std::process::id(),
            next_id: AtomicU64::new(1),
            stats: Arc::new(Counters::default()),
            state: Mutex::new(PoolState {
                closed: false,
                slots: (0..settings.workers)
                    .map(|_| Slot {
                        state: SlotState::Spawning,
                        failures: 0,
                    })
                    .collect(),
                conns: Vec::new(),
                waiters: HashMap::new(),
                shutdown_waiters: Vec::new(),
            }),
        });
        crate::telemetry::register_process_pool(
            shared.stats.clone(),
            Arc::<PoolShared>::downgrade(&shared),
        );
        // From here on, dropping `pool` kills whatever was started.
        let pool = ProcessPool {
            shared: shared.clone(),
        };
        for slot in 0..settings.workers {
            if settings
                .cancel
                .as_ref()
                .is_some_and(|flag| flag.load(Ordering::Acquire))
            {
                return Err(ProcessError::cancelled());
            }
            let raw = spawn_pool_child_blocking(shared.config.clone()).map_err(spawn_error)?;
            match shared.install(slot, Ok(raw), false) {
                Some(driver) => (shared.spawner)(Box::pin(driver)),
                None => {
                    let err = lock(&shared.state)
                        .slots
                        .get(slot)
                        .and_then(|s| match &s.state {
                            SlotState::Failed(err) => Some(err.clone()),
                            _ => None,
                        });
                    return Err(ProcessError::spawn(err.unwrap_or_else(|| {
                        Arc::new(io::Error::other("the worker process could not be set up"))
                    })));
                }
            }
        }
        Ok(pool)
    }
}

impl crate::telemetry::ProcessSource for PoolShared {
    fn children(&self) -> usize {
        // In a `fork()` copy the lock may be held forever (see `owner`).
        if !self.is_owner() {
            return 0;
        }
        lock(&self.state).conns.len()
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        // In a `fork()` copy of the owner (Python's multiprocessing), the
        // children are not ours and the threads that drive them do not exist;
        // their locks may even be held forever. Leave everything alone.
        if self.shared.is_owner() {
            self.shared.close_now();
        }
    }
}

/// The future of [`ProcessPool::shutdown`].
#[must_use = "the shutdown has begun; await it to know when every child is reaped"]
pub struct Shutdown {
    shared: Arc<PoolShared>,
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown").finish_non_exhaustive()
    }
}

impl Future for Shutdown {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let mut state = lock(&self.shared.state);
        if state.conns.is_empty() {
            return Poll::Ready(());
        }
        if !state
            .shutdown_waiters
            .iter()
            .any(|w| w.will_wake(cx.waker()))
        {
            state.shutdown_waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
