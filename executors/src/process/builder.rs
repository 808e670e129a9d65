//! [`ProcessPoolBuilder`]: the settings of a [`ProcessPool`].

use crate::sync::unmodelled::Arc;
use crate::sync::unmodelled::atomic::AtomicBool;
use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use vedart_reactor::Reactor;

use super::error::ProcessError;
use super::frame::MAX_ENCODABLE_PAYLOAD;
use super::pool::{
    BoxFuture, DEFAULT_GRACE_PERIOD, DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE, ProcessPool,
    Spawner,
};
use super::sys::SpawnConfig;

/// Configures and starts a [`ProcessPool`]; see [`ProcessPool::builder`].
pub struct ProcessPoolBuilder {
    settings: Settings,
}

/// Everything a pool is built from.
pub(crate) struct Settings {
    pub(crate) config: SpawnConfig,
    pub(crate) workers: usize,
    pub(crate) max_tasks_per_child: Option<u64>,
    pub(crate) max_frame_size: usize,
    pub(crate) max_message_size: usize,
    pub(crate) grace_period: Duration,
    pub(crate) forward_stderr: bool,
    pub(crate) retries: u32,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) spawner: Option<Spawner>,
    pub(crate) reactor: Option<Reactor>,
    /// Set by the builder's owner to stop `build` before the next child.
    pub(crate) cancel: Option<Arc<AtomicBool>>,
}

impl fmt::Debug for ProcessPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPoolBuilder")
            .field("config", &self.settings.config)
            .field("workers", &self.settings.workers)
            .field("max_tasks_per_child", &self.settings.max_tasks_per_child)
            .field("max_frame_size", &self.settings.max_frame_size)
            .field("max_message_size", &self.settings.max_message_size)
            .field("grace_period", &self.settings.grace_period)
            .field("retries", &self.settings.retries)
            .field("call_timeout", &self.settings.call_timeout)
            .finish_non_exhaustive()
    }
}

impl ProcessPoolBuilder {
    pub(crate) fn new(program: impl AsRef<OsStr>) -> ProcessPoolBuilder {
        ProcessPoolBuilder {
            settings: Settings {
                config: SpawnConfig {
                    program: program.as_ref().to_owned(),
                    args: Vec::new(),
                    env: Vec::new(),
                    env_clear: false,
                    current_dir: None,
                },
                workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
                max_tasks_per_child: None,
                max_frame_size: DEFAULT_MAX_FRAME_SIZE,
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                grace_period: DEFAULT_GRACE_PERIOD,
                forward_stderr: false,
                retries: 0,
                call_timeout: None,
                spawner: None,
                reactor: None,
                cancel: None,
            },
        }
    }

    /// Adds an argument to the children's command line.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.settings.config.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments to the children's command line.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.settings
            .config
            .args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the children.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.settings
            .config
            .env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Sets several environment variables for the children.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (key, value) in vars {
            self = self.env(key, value);
        }
        self
    }

    /// Removes an environment variable from the children's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.settings
            .config
            .env
            .push((key.as_ref().to_owned(), None));
        self
    }

    /// Starts the children with an empty environment plus what is set after this.
    pub fn env_clear(mut self) -> Self {
        self.settings.config.env_clear = true;
        self.settings.config.env.clear();
        self
    }

    /// Sets the children's working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.settings.config.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Number of children (at least 1). Default: the number of CPUs.
    pub fn workers(mut self, workers: usize) -> Self {
        self.settings.workers = workers.max(1);
        self
    }

    /// Replaces a child after it was sent this many requests (at least 1).
    /// Default: never.
    pub fn max_tasks_per_child(mut self, tasks: u64) -> Self {
        self.settings.max_tasks_per_child = Some(tasks.max(1));
        self
    }

    /// Maximum payload of one frame in either direction, clamped to
    /// `1..=u32::MAX`. Longer requests and answers travel as several frames
    /// (`Part` frames, see [`frame`](super::frame)); the children learn the
    /// value from the `VEDART_MAX_FRAME_SIZE` environment variable. A single
    /// frame over it from a child is a protocol error. Default:
    /// [`DEFAULT_MAX_FRAME_SIZE`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.settings.max_frame_size = bytes.clamp(1, MAX_ENCODABLE_PAYLOAD);
        self
    }

    /// Maximum size of one request or answer, however many frames it takes. A
    /// larger request fails with `TooLarge` before it is sent; a larger answer
    /// is dropped as it arrives and its call fails with `TooLarge` (the child
    /// stays). Default: [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.settings.max_message_size = bytes.max(1);
        self
    }

    /// Time between SIGTERM and SIGKILL when a child is terminated. Default:
    /// [`DEFAULT_GRACE_PERIOD`].
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.settings.grace_period = grace;
        self
    }

    /// Also copies everything the children write to stderr to this process's
    /// stderr (the last lines are kept for `WorkerDied` errors either way).
    /// Default: off.
    pub fn forward_stderr(mut self, forward: bool) -> Self {
        self.settings.forward_stderr = forward;
        self
    }

    /// How many times a call may be sent again after an attempt that had
    /// started was lost to its child's death or termination (see
    /// [`Call`](super::Call), "At most once"); each call can override it with
    /// [`Call::retries`](super::Call::retries). Default: 0, every call runs at
    /// most once.
    pub fn retries(mut self, retries: u32) -> Self {
        self.settings.retries = retries;
        self
    }

    /// How long each call may take, from its first poll, before it resolves
    /// to a `TimedOut` error and the child that has its request is terminated
    /// and replaced; see [`Call::timeout`](super::Call::timeout), which
    /// overrides it per call. Default: no limit.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.settings.call_timeout = Some(timeout);
        self
    }

    /// Runs the pool's per-child futures with `spawner` instead of the
    /// `veda-process` background thread. The futures must be run until they
    /// complete (they end when their child is reaped).
    pub fn spawner(mut self, spawner: impl Fn(BoxFuture) + Send + Sync + 'static) -> Self {
        self.settings.spawner = Some(Arc::new(spawner));
        self
    }

    /// Registers the children's pipes with `reactor`. Default: the background
    /// thread's reactor, or [`Reactor::current`] when a spawner is set.
    pub fn reactor(mut self, reactor: Reactor) -> Self {
        self.settings.reactor = Some(reactor);
        self
    }

    /// Lets another thread stop [`build`](Self::build): once `flag` is set,
    /// `build` starts no further child, kills and reaps those it started, and
    /// fails with a `Cancelled` error. (A Ctrl+C while a caller waits for a
    /// large pool to start is the use.)
    pub fn cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.settings.cancel = Some(flag);
        self
    }

    /// Starts every child and returns the pool. Blocks for the fork+exec of
    /// each child (about a millisecond each), not for their initialisation.
    ///
    /// # Errors
    ///
    /// A `Spawn` error if a child cannot be started (the program does not
    /// exist, ...) or the background driver cannot be started; a `Cancelled`
    /// error once the [`cancel_flag`](Self::cancel_flag) is set.
    pub fn build(self) -> Result<ProcessPool, ProcessError> {
        ProcessPool::start(self.settings)
    }
}
