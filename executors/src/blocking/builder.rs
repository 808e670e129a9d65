//! Configuration of a [`BlockingPool`]: bounds, keep-alive, thread naming and hooks.

use std::fmt;
use std::time::Duration;

use super::error::BlockingPoolError;
use super::pool::{BlockingPool, Config};

/// Default lower bound on threads: threads start lazily, and all of them may retire.
pub const DEFAULT_MIN_WORKERS: usize = 0;

/// Default upper bound on threads, unless [`MAX_WORKERS_ENV`] says otherwise.
pub const DEFAULT_MAX_WORKERS: usize = 512;

/// Default time an idle thread waits for work before it may retire.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Environment variable that overrides [`DEFAULT_MAX_WORKERS`]; its value is
/// clamped to `1..=`[`MAX_WORKERS_LIMIT`], and ignored unless it is an integer.
pub const MAX_WORKERS_ENV: &str = "VEDA_MAX_BLOCKING_THREADS";

/// The largest value [`MAX_WORKERS_ENV`] may set.
pub const MAX_WORKERS_LIMIT: usize = 10_000;

pub(crate) type NameFn = dyn Fn(usize) -> String + Send + Sync;
pub(crate) type HookFn = dyn Fn() + Send + Sync;

/// Builds a [`BlockingPool`]; start with [`BlockingPool::builder`].
///
/// # Examples
///
#[doc = example!()]
/// use std::time::Duration;
/// use vedart_executors::blocking::BlockingPool;
///
/// let pool = BlockingPool::builder()
///     .min_workers(1)
///     .max_workers(8)
///     .keep_alive(Duration::from_secs(2))
///     .thread_name(|i| format!("my-blocking-{i}"))
///     .build()?;
/// assert_eq!(pool.stats().max_workers, 8);
/// pool.shutdown(None);
/// # Ok::<(), vedart_executors::blocking::BlockingPoolError>(())
/// ```
pub struct BlockingPoolBuilder {
    min_workers: usize,
    max_workers: usize,
    keep_alive: Duration,
    thread_name: Box<NameFn>,
    stack_size: Option<usize>,
    on_thread_start: Option<Box<HookFn>>,
    on_thread_stop: Option<Box<HookFn>>,
}

impl BlockingPoolBuilder {
    pub(crate) fn new() -> Self {
        Self {
            min_workers: DEFAULT_MIN_WORKERS,
            max_workers: default_max_workers(),
            keep_alive: DEFAULT_KEEP_ALIVE,
            thread_name: Box::new(|i| format!("veda-blocking-{i}")),
            stack_size: None,
            on_thread_start: None,
            on_thread_stop: None,
        }
    }

    /// Threads that stay alive once started, even when idle (default 0).
    /// Threads still start lazily, one per job that finds no idle thread.
    pub fn min_workers(mut self, n: usize) -> Self {
        self.min_workers = n;
        self
    }

    /// The most threads the pool runs at once (default 512, or
    /// [`MAX_WORKERS_ENV`]); jobs beyond them wait in the queue.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = n;
        self
    }

    /// How long an idle thread waits for work before it may retire (default 10 s).
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Names thread `i` (default `veda-blocking-{i}`). Indices are reused: a new
    /// thread takes the smallest index no live thread holds, so `i < max_workers`.
    pub fn thread_name(mut self, f: impl Fn(usize) -> String + Send + Sync + 'static) -> Self {
        self.thread_name = Box::new(f);
        self
    }

    /// Stack size of each thread in bytes (default: the standard library's,
    /// 2 MiB unless `RUST_MIN_STACK` says otherwise). Threads that run code
    /// written for ordinary threads (an interpreter's, say) may want
    /// [`default_thread_stack_size`] instead.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Runs on each new thread before it takes its first job. A panic in it is
    /// caught and ignored.
    pub fn on_thread_start(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_thread_start = Some(Box::new(f));
        self
    }

    /// Runs on each thread as it exits, after its last job. A panic in it is
    /// caught and ignored.
    pub fn on_thread_stop(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_thread_stop = Some(Box::new(f));
        self
    }

    /// Builds the pool. No thread starts until the first job.
    ///
    /// # Errors
    ///
    /// A [`BlockingPoolError`] naming the field when `max_workers` is 0
    /// (`"max_workers"`) or `min_workers` exceeds `max_workers` (`"min_workers"`).
    pub fn build(self) -> Result<BlockingPool, BlockingPoolError> {
        validate_bounds(self.min_workers, self.max_workers)?;
        Ok(BlockingPool::from_config(Config {
            min_workers: self.min_workers,
            max_workers: self.max_workers,
            keep_alive: self.keep_alive,
            thread_name: self.thread_name,
            stack_size: self.stack_size,
            on_thread_start: self.on_thread_start,
            on_thread_stop: self.on_thread_stop,
        }))
    }
}

impl fmt::Debug for BlockingPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPoolBuilder")
            .field("min_workers", &self.min_workers)
            .field("max_workers", &self.max_workers)
            .field("keep_alive", &self.keep_alive)
            .field("stack_size", &self.stack_size)
            .field("on_thread_start", &self.on_thread_start.is_some())
            .field("on_thread_stop", &self.on_thread_stop.is_some())
            .finish_non_exhaustive()
    }
}

/// Checks a `[min, max]` pair of thread bounds.
pub(crate) fn validate_bounds(min: usize, max: usize) -> Result<(), BlockingPoolError> {
    if max == 0 {
        return Err(BlockingPoolError::max_is_zero());
    }
    if min > max {
        return Err(BlockingPoolError::min_above_max(min, max));
    }
    Ok(())
}

/// The stack size the C library gives a thread started without one: what
/// `pthread_create`, and so Python's `threading.Thread`, uses. On glibc that is
/// the soft `RLIMIT_STACK` the process started with (usually 8 MiB), or 2 MiB
/// when it was unlimited. `None` if the C library does not say.
///
/// # Examples
///
#[doc = example!()]
/// use vedart_executors::blocking::{BlockingPool, default_thread_stack_size};
///
/// let mut builder = BlockingPool::builder();
/// if let Some(bytes) = default_thread_stack_size() {
///     builder = builder.stack_size(bytes);
/// }
/// let pool = builder.build()?;
/// # pool.shutdown(None);
/// # Ok::<(), vedart_executors::blocking::BlockingPoolError>(())
/// ```
pub fn default_thread_stack_size() -> Option<usize> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: `pthread_attr_init` initializes the attributes object it is given.
    if unsafe { libc::pthread_attr_init(attr.as_mut_ptr()) } != 0 {
        return None;
    }
    let mut size = 0;
    // SAFETY: `attr` was initialized above; `size` is a valid place to write.
    // Fresh attributes carry no size of their own, so the default is reported.
    let read = unsafe { libc::pthread_attr_getstacksize(attr.as_ptr(), &mut size) };
    // SAFETY: `attr` was initialized above and is destroyed once, here.
    unsafe { libc::pthread_attr_destroy(attr.as_mut_ptr()) };
    (read == 0 && size > 0).then_some(size)
}

fn default_max_workers() -> usize {
    parse_max_workers(std::env::var(MAX_WORKERS_ENV).ok().as_deref())
}

/// The default upper bound given the value of [`MAX_WORKERS_ENV`], if set.
fn parse_max_workers(value: Option<&str>) -> usize {
    value
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(DEFAULT_MAX_WORKERS, |n| n.clamp(1, MAX_WORKERS_LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_workers_env_parsing() {
        assert_eq!(parse_max_workers(None), DEFAULT_MAX_WORKERS);
        assert_eq!(parse_max_workers(Some("64")), 64);
        assert_eq!(parse_max_workers(Some(" 64\n")), 64);
        assert_eq!(parse_max_workers(Some("0")), 1);
        assert_eq!(parse_max_workers(Some("99999999")), MAX_WORKERS_LIMIT);
        assert_eq!(parse_max_workers(Some("-3")), DEFAULT_MAX_WORKERS);
        assert_eq!(parse_max_workers(Some("many")), DEFAULT_MAX_WORKERS);
        assert_eq!(parse_max_workers(Some("")), DEFAULT_MAX_WORKERS);
    }

    #[test]
    fn the_default_thread_stack_is_the_c_librarys() {
        let size = default_thread_stack_size().expect("glibc reports its default");
        // What `pthread_create` gives a thread without a size: at least a page,
        // and a whole number of pages.
        assert!(size >= 4096 && size % 4096 == 0, "{size}");
    }

    #[test]
    fn bounds_validation_names_the_field() {
        assert!(validate_bounds(0, 1).is_ok());
        assert!(validate_bounds(4, 4).is_ok());
        assert_eq!(validate_bounds(0, 0).unwrap_err().field(), "max_workers");
        assert_eq!(validate_bounds(5, 4).unwrap_err().field(), "min_workers");
    }
}
