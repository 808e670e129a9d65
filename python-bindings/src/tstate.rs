//! One Python thread state per pool thread, for the thread's whole life.
//!
//! Without this, every chunk a pool thread runs would attach with
//! `PyGILState_Ensure` on a thread that has no thread state, and the interpreter
//! would create one and destroy it again when the chunk ends: `threading.local`
//! data (per-thread caches, connections) would vanish between chunks and each
//! chunk would pay for the allocation.
//!
//! # Protocol
//!
//! 1. The pool's start hook ([`pin_current_thread`]) runs on each new thread:
//!    `PyGILState_Ensure` creates the thread state and takes the interpreter, the
//!    thread is named in `threading` after its OS name (`veda-blocking-3`), and
//!    `PyEval_SaveThread` releases the interpreter while keeping the state.
//! 2. Every later `Python::attach` on that thread finds the state (the
//!    `PyGILState` counter goes 1 → 2 → 1) and only re-acquires the interpreter.
//! 3. The stop hook ([`unpin_current_thread`]) restores the state and releases it
//!    with the matching `PyGILState_Release`, which destroys it.
//! 4. Once the interpreter is exiting ([`mark_interpreter_exiting`], called from
//!    an `atexit` hook) neither hook touches Python: a thread that stops during
//!    finalization leaks its state rather than attach to a dying interpreter.

use std::cell::Cell;
use std::ptr::NonNull;

use pyo3::ffi;
use pyo3::prelude::*;

use crate::sync::{AtomicBool, Ordering};

/// Set once, when the interpreter starts exiting: pool threads must not attach.
static INTERPRETER_EXITING: AtomicBool = AtomicBool::new(false);

/// Records that the interpreter is exiting; from now on pool threads leave
/// Python alone. Called from the package's `atexit` hook.
pub(crate) fn mark_interpreter_exiting() {
    INTERPRETER_EXITING.store(true, Ordering::SeqCst);
}

/// Whether [`mark_interpreter_exiting`] has been called.
pub(crate) fn interpreter_exiting() -> bool {
    INTERPRETER_EXITING.load(Ordering::SeqCst)
}

/// What [`pin_current_thread`] took, to be given back by [`unpin_current_thread`].
#[derive(Clone, Copy)]
struct Pinned {
    gstate: ffi::PyGILState_STATE,
    tstate: NonNull<ffi::PyThreadState>,
}

thread_local! {
    static PINNED: Cell<Option<Pinned>> = const { Cell::new(None) };
}

/// Gives the calling (pool) thread a Python thread state that lives until
/// [`unpin_current_thread`]. Does nothing if the interpreter is not running or
/// is exiting, or if the thread is pinned already.
pub(crate) fn pin_current_thread() {
    if interpreter_exiting() || PINNED.with(Cell::get).is_some() {
        return;
    }
    // SAFETY: `Py_IsInitialized` may be called at any time, from any thread.
    if unsafe { ffi::Py_IsInitialized() } == 0 {
        return;
    }
    // SAFETY: the interpreter is initialized and not exiting (checked above, best
    // effort, like pyo3's own `try_attach`); this is a fresh pool thread that
    // holds no thread state, so `PyGILState_Ensure` creates one and takes the
    // interpreter.
    let gstate = unsafe { ffi::PyGILState_Ensure() };
    Python::attach(name_python_thread);
    // SAFETY: this thread holds the interpreter, taken by `PyGILState_Ensure` just
    // above; `PyEval_SaveThread` releases it and hands back this thread's state.
    let tstate = unsafe { ffi::PyEval_SaveThread() };
    // `PyEval_SaveThread` returns the state it detached, which exists: it was
    // just created.
    if let Some(tstate) = NonNull::new(tstate) {
        PINNED.with(|pinned| pinned.set(Some(Pinned { gstate, tstate })));
    }
}

/// Releases the thread state taken by [`pin_current_thread`], if any. Leaks it
/// instead when the interpreter is exiting.
pub(crate) fn unpin_current_thread() {
    let Some(pinned) = PINNED.with(Cell::take) else {
        return;
    };
    if interpreter_exiting() {
        return;
    }
    // SAFETY: `pinned.tstate` is this thread's own state, saved by
    // `pin_current_thread` and not attached now (every `Python::attach` on this
    // thread has returned: the stop hook runs after the last job).
    unsafe { ffi::PyEval_RestoreThread(pinned.tstate.as_ptr()) };
    Python::attach(forget_python_thread);
    // SAFETY: matches the `PyGILState_Ensure` of `pin_current_thread`; the thread
    // holds the interpreter (restored above), and this last release destroys the
    // thread state and releases the interpreter.
    unsafe { ffi::PyGILState_Release(pinned.gstate) };
}

/// Names the `threading` object of this thread after the OS thread, so Python
/// code (logging, `threading.current_thread()`) sees `veda-blocking-3`.
fn name_python_thread(py: Python<'_>) {
    let Some(name) = std::thread::current().name().map(str::to_owned) else {
        return;
    };
    let renamed = py
        .import("threading")
        .and_then(|threading| threading.call_method0("current_thread"))
        .and_then(|thread| thread.setattr("name", name));
    if let Err(error) = renamed {
        error.write_unraisable(py, None);
    }
}

/// Drops this thread's entry from `threading`'s table of live threads, so a later
/// thread that reuses the OS thread id does not inherit its name.
fn forget_python_thread(py: Python<'_>) {
    let forgotten = py.import("threading").and_then(|threading| {
        let ident = threading.call_method0("get_ident")?;
        threading
            .getattr("_active")?
            .call_method1("pop", (ident, py.None()))
    });
    if let Err(error) = forgotten {
        error.write_unraisable(py, None);
    }
}
