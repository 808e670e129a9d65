//! Surviving `fork()`: process-wide values made again in a child process, and
//! locks that no vanished thread can hold there.
//!
//! A process made by `fork()` has one thread, the copy of the one that called
//! `fork`. The memory of every other thread of the parent is copied, but not
//! the threads: a global runtime whose workers do not exist, a queue served by
//! a thread that does not exist, a lock that a thread which does not exist
//! will never release, and the parent's epoll instance (shared with the parent:
//! what the child registered there would wake the parent). Python programs
//! fork (`os.fork`, `multiprocessing`'s `fork` start method) after using
//! VedaRT, so its process-wide state survives that with three tools:
//!
//! - [`generation`]: a number that is larger in a child than anything its
//!   parent (or any ancestor) could have stored.
//! - [`PerProcess`]: a process-wide value made on first use, and again on first
//!   use in a child; the copy inherited from the parent is leaked, never used
//!   nor dropped (dropping a runtime would wait for workers that do not exist).
//! - [`AtFork`]: locks taken just before the process forks and released just
//!   after it, in the parent and in the child, so that no thread holds them at
//!   the moment of the fork; a child hook may tidy up what the child inherits
//!   (forget the parent's pools) while they are held.
//!
//! # Implementation
//!
//! One set of `pthread_atfork` handlers, installed before the first value,
//! lock or generation that depends on them is handed out:
//!
//! 1. *prepare* (in the forking thread, before the fork): lock the list of
//!    registered [`AtFork`]s, then take each one's locks in registration order;
//!    keep everything in a thread-local.
//! 2. *parent*: release them in reverse order.
//! 3. *child*: increment the generation, run each child hook in reverse order
//!    (which releases its locks), release the list.
//!
//! No code holds two registered locks at once and no holder of one waits for
//! anything (the Python interpreter included) that a forking thread may hold:
//! each is held for a few field updates. Taking them all in one order
//! therefore cannot deadlock. Registration installs the handlers before it
//! takes the list's lock, because `pthread_atfork` waits for a fork in
//! progress, which waits for that lock.
//!
//! Two threads that make the first use at the same moment may both install the
//! handlers; a per-thread depth count makes the second set do nothing.
//!
//! `vfork`, `posix_spawn` and a raw `clone` run no handlers: they are followed
//! by `exec` and need none.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::sync::unmodelled::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use crate::sync::unmodelled::{Mutex, MutexGuard, lock};

/// This process's generation; see [`generation`].
static GENERATION: AtomicU64 = AtomicU64::new(1);
/// Set once the `pthread_atfork` handlers are installed.
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Every registered [`AtFork`], in registration order.
static REGISTERED: Mutex<Vec<&'static AtFork>> = Mutex::new(Vec::new());

std::thread_local! {
    /// Prepare handlers entered and not yet left by parent or child handlers.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// What the prepare handler took, until the fork is over.
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// The list's lock and what each entry's `before` returned, in list order.
struct Held {
    list: MutexGuard<'static, Vec<&'static AtFork>>,
    taken: Vec<Box<dyn Any>>,
}

/// The fork generation of this process: 1 in a process that never forked, and
/// in a child made by `fork()` more than in its parent at the moment of the
/// fork. A value stored with the generation that made it is therefore stale
/// exactly when the two differ.
///
/// # Examples
///
/// ```
/// let here = vedart_reactor::fork::generation();
/// assert_eq!(here, vedart_reactor::fork::generation());
/// ```
pub fn generation() -> u64 {
    install();
    GENERATION.load(Ordering::Acquire)
}

/// Installs the `pthread_atfork` handlers unless that was done.
fn install() {
    if INSTALLED.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: the handlers are plain functions that live as long as the
    // process and touch only this module's statics and thread-locals.
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    // The only failure is ENOMEM; the next use tries again.
    if rc == 0 {
        INSTALLED.store(true, Ordering::Release);
    }
}

/// Step 1 of the module documentation.
extern "C" fn prepare() {
    let _ = DEPTH.try_with(|depth| {
        depth.set(depth.get() + 1);
        if depth.get() > 1 {
            return;
        }
        let list = lock(&REGISTERED);
        let taken = list.iter().map(|entry| (entry.before)()).collect();
        let _ = HELD.try_with(|held| *held.borrow_mut() = Some(Held { list, taken }));
    });
}

/// Step 2 of the module documentation.
extern "C" fn parent() {
    release(false);
}

/// Step 3 of the module documentation.
extern "C" fn child() {
    release(true);
}

fn release(in_child: bool) {
    let outermost = DEPTH
        .try_with(|depth| {
            let left = depth.get().saturating_sub(1);
            depth.set(left);
            left == 0
        })
        .unwrap_or(true);
    if !outermost {
        return;
    }
    if in_child {
        GENERATION.fetch_add(1, Ordering::AcqRel);
    }
    let Some(Held { list, taken }) = HELD
        .try_with(|held| held.borrow_mut().take())
        .ok()
        .flatten()
    else {
        return;
    };
    for (entry, taken) in list.iter().zip(taken).rev() {
        match entry.in_child {
            Some(hook) if in_child => hook(taken),
            _ => drop(taken),
        }
    }
    drop(list);
}

/// Locks that must be free, and consistent, at the moment the process forks.
///
/// `before` takes them and returns the guards; they are dropped after the
/// fork in the parent, and handed to the child hook (if any) in the child,
/// which drops them when it is done. Declare one as a `static` and call
/// [`AtFork::register`] before taking any of its locks (registering again is a
/// single atomic load). Whatever code holds one of the locks must never wait
/// for anything a forking thread may hold, nor take the lock of another
/// registered `AtFork`.
///
/// # Examples
///
/// ```
/// use std::any::Any;
/// use std::sync::Mutex;
/// use vedart_reactor::fork::AtFork;
///
/// static NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());
///
/// fn take_names() -> Box<dyn Any> {
///     Box::new(NAMES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
/// }
///
/// static NAMES_AT_FORK: AtFork = AtFork::new(take_names);
///
/// fn add_name(name: &str) {
///     NAMES_AT_FORK.register();
///     NAMES.lock().unwrap().push(name.to_owned());
/// }
/// add_name("veda");
/// ```
pub struct AtFork {
    before: fn() -> Box<dyn Any>,
    in_child: Option<fn(Box<dyn Any>)>,
    registered: AtomicBool,
}

impl fmt::Debug for AtFork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtFork")
            .field("registered", &self.registered.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AtFork {
    /// Locks taken by `before`, released after the fork in both processes.
    pub const fn new(before: fn() -> Box<dyn Any>) -> AtFork {
        AtFork {
            before,
            in_child: None,
            registered: AtomicBool::new(false),
        }
    }

    /// As [`AtFork::new`], and in the child `in_child` receives the guards
    /// `before` returned (the child is still single-threaded then), to tidy up
    /// before it drops them.
    pub const fn with_child_hook(
        before: fn() -> Box<dyn Any>,
        in_child: fn(Box<dyn Any>),
    ) -> AtFork {
        AtFork {
            before,
            in_child: Some(in_child),
            registered: AtomicBool::new(false),
        }
    }

    /// Makes sure `before` runs before every later fork. Call it before
    /// taking the locks, and never while holding the lock of another
    /// registered `AtFork`.
    pub fn register(&'static self) {
        if self.registered.load(Ordering::Acquire) {
            return;
        }
        install();
        let mut list = lock(&REGISTERED);
        if !list.iter().any(|entry| std::ptr::eq(*entry, self)) {
            list.push(self);
        }
        self.registered.store(true, Ordering::Release);
    }
}

/// A process-wide value, made on first use and made again on first use in a
/// child process made by `fork()`.
///
/// Values are never dropped: the one of this process lives as long as the
/// process, and one inherited from the parent is left alone (its threads do
/// not exist, so dropping it would wait for them, and nothing else may touch
/// it). Meant for `static`s.
///
/// # Examples
///
/// ```
/// use vedart_reactor::fork::PerProcess;
///
/// static STARTED: PerProcess<std::time::Instant> = PerProcess::new();
///
/// let first = *STARTED.get_or_try_init(|| Ok::<_, ()>(std::time::Instant::now())).unwrap();
/// assert_eq!(STARTED.get(), Some(&first));
/// ```
pub struct PerProcess<T> {
    /// The latest value made, by this process or an ancestor.
    ///
    /// # Invariant
    ///
    /// Null, or from `Box::into_raw`, never freed nor written through.
    current: AtomicPtr<Made<T>>,
    /// The generation whose thread is making a value, 0 when none is. A
    /// smaller generation than this process's is a thread of an ancestor,
    /// interrupted by a fork: it will never finish here.
    making: AtomicU64,
    _value: PhantomData<T>,
}

struct Made<T> {
    generation: u64,
    value: T,
}

impl<T> fmt::Debug for PerProcess<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerProcess")
            .field("made", &!self.current.load(Ordering::Relaxed).is_null())
            .finish_non_exhaustive()
    }
}

impl<T> Default for PerProcess<T> {
    fn default() -> Self {
        PerProcess::new()
    }
}

impl<T> PerProcess<T> {
    /// An empty cell.
    pub const fn new() -> PerProcess<T> {
        PerProcess {
            current: AtomicPtr::new(std::ptr::null_mut()),
            making: AtomicU64::new(0),
            _value: PhantomData,
        }
    }

    fn made_in(&self, generation: u64) -> Option<&T> {
        let made = self.current.load(Ordering::Acquire);
        // SAFETY: by the invariant of `current`, a non-null pointer is a live,
        // never freed and never mutated `Made`.
        let made = unsafe { made.as_ref() }?;
        (made.generation == generation).then_some(&made.value)
    }
}

impl<T: Send + Sync> PerProcess<T> {
    /// This process's value, if it was made.
    pub fn get(&self) -> Option<&T> {
        self.made_in(generation())
    }

    /// This process's value, made by `make` if there is none yet; see
    /// [`PerProcess::get_or_try_init`].
    ///
    /// # Panics
    ///
    /// Re-raises a panic of `make`.
    pub fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        match self.get_or_try_init(|| Ok::<T, std::convert::Infallible>(make())) {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    /// This process's value, made by `make` if there is none yet. A thread
    /// that finds another one making it waits for it; an error is returned to
    /// the caller and the next call tries again.
    ///
    /// # Errors
    ///
    /// Whatever `make` returns.
    ///
    /// # Panics
    ///
    /// Re-raises a panic of `make` (the next call tries again). `make` must not
    /// use this cell: it would wait for itself.
    pub fn get_or_try_init<E>(&self, make: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
        let generation = generation();
        let mut make = Some(make);
        let mut waits = 0u32;
        loop {
            if let Some(value) = self.made_in(generation) {
                return Ok(value);
            }
            let holder = self.making.load(Ordering::Acquire);
            if holder >= generation {
                // Another thread of this process is making it.
                backoff(&mut waits);
                continue;
            }
            if self
                .making
                .compare_exchange(holder, generation, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let _done = Making(&self.making);
            if let Some(value) = self.made_in(generation) {
                return Ok(value);
            }
            let make = make.take().expect("`make` runs at most once");
            let made = Box::into_raw(Box::new(Made {
                generation,
                value: make()?,
            }));
            // What `current` held (an ancestor's value, or nothing) is leaked.
            self.current.store(made, Ordering::Release);
            // SAFETY: `made` was just leaked and is never freed.
            return Ok(unsafe { &(*made).value });
        }
    }
}

/// Clears `making` when the making thread is done, also when `make` fails or
/// panics.
struct Making<'a>(&'a AtomicU64);

impl Drop for Making<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Waits a little for another thread: spins first, then sleeps, as making a
/// value may start threads and take a millisecond.
fn backoff(waits: &mut u32) {
    *waits = waits.saturating_add(1);
    if *waits < 64 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(100));
    }
}
