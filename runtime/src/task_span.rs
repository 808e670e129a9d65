//! The `tracing` feature: a span per spawned task.
//!
//! [`spawn`](crate::spawn) wraps the task's future in [`Instrumented`], which
//! enters the task's span around every poll. The span (target
//! `vedart::task`, name `task`, level INFO) records
//!
//! - `task.id`: the task's [`TaskId`];
//! - `task.name`: where it was spawned (`file:line:column`);
//! - `task.parent`: the id of the task that spawned it, absent for a task
//!   spawned from outside any task.
//!
//! The span is created at the spawn call, so its `tracing` parent is the span
//! current there: the spawning task's span, or whatever span the caller of
//! `block_on` / `Handle::spawn` had entered. Subscribers see task structure as
//! span nesting, and events logged inside a task carry its span. Without the
//! feature only [`SpawnSite`], a zero-sized type, remains.

#[cfg(feature = "tracing")]
use std::cell::Cell;
#[cfg(feature = "tracing")]
use std::future::Future;
#[cfg(feature = "tracing")]
use std::panic::Location;
#[cfg(feature = "tracing")]
use std::pin::Pin;
#[cfg(feature = "tracing")]
use std::task::{Context, Poll};

#[cfg(feature = "tracing")]
use crate::TaskId;

/// Where a task was spawned: the source location with the `tracing`
/// feature, nothing (zero-sized, `track_caller` off) without it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpawnSite {
    #[cfg(feature = "tracing")]
    location: &'static Location<'static>,
}

impl SpawnSite {
    /// The caller's location (through every `track_caller` frame above).
    #[cfg_attr(feature = "tracing", track_caller)]
    #[inline(always)]
    pub(crate) fn here() -> SpawnSite {
        SpawnSite {
            #[cfg(feature = "tracing")]
            location: Location::caller(),
        }
    }
}

#[cfg(feature = "tracing")]
std::thread_local! {
    /// The task whose poll is running on this thread, if it is instrumented.
    static CURRENT_TASK: Cell<Option<TaskId>> = const { Cell::new(None) };
}

#[cfg(feature = "tracing")]
pin_project_lite::pin_project! {
    /// A task's future with its span entered around every poll.
    pub(crate) struct Instrumented<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        id: TaskId,
    }
}

/// Wraps the future of task `id`, spawned at `site`.
#[cfg(feature = "tracing")]
pub(crate) fn instrument<F>(inner: F, id: TaskId, site: SpawnSite) -> Instrumented<F> {
    let location = site.location;
    let parent = CURRENT_TASK.with(Cell::get).map(TaskId::as_u64);
    let span = tracing::info_span!(
        target: "vedart::task",
        "task",
        task.id = id.as_u64(),
        task.name = %location,
        task.parent = parent,
    );
    Instrumented { inner, span, id }
}

#[cfg(feature = "tracing")]
impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        /// Restores the previously current task, even if the poll panics.
        struct Restore(Option<TaskId>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT_TASK.with(|current| current.set(self.0));
            }
        }
        let this = self.project();
        let _entered = this.span.enter();
        let _restore = Restore(CURRENT_TASK.with(|current| current.replace(Some(*this.id))));
        this.inner.poll(cx)
    }
}
