//! Waiting for a child to exit without a thread per child.
//!
//! # Implementation
//!
//! [`ExitWatcher`] opens a pidfd for the child (`pidfd_open`, Linux 5.3+) and
//! registers it with the reactor: the pidfd becomes readable when the child
//! exits, and only then does the watcher call `waitpid(WNOHANG)`. Where
//! `pidfd_open` is missing it falls back to polling `waitpid(WNOHANG)` on a
//! timer that starts at 1 ms and backs off to 50 ms.
//!
//! A caller that only *might* see an exit soon (a pool child that is healthy)
//! polls with `expecting = false`: in fallback mode that registers nothing, so
//! a healthy child costs no timer; the caller polls again with `true` once it
//! has a reason (EOF on the child's stdout, a signal sent). In pidfd mode the
//! watcher also arms a slow safety timer while expecting, so a pidfd event that
//! raced ahead of the reapable zombie cannot leave it waiting forever.

use crate::sync::unmodelled::Arc;
use std::fmt;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use vedart_reactor::{Async, Direction, Reactor, Sleep};

use super::sys::{ProcHandle, Reaped, pidfd_open};

/// First delay of the `waitpid` polling fallback.
const POLL_MIN: Duration = Duration::from_millis(1);
/// Longest delay of the polling fallback.
const POLL_MAX: Duration = Duration::from_millis(50);
/// Safety-net re-check period in pidfd mode while an exit is expected.
const PIDFD_RECHECK: Duration = Duration::from_millis(20);

/// Waits for one child's exit; see the module documentation.
pub(crate) struct ExitWatcher {
    proc: Arc<ProcHandle>,
    reactor: Reactor,
    /// The child's pidfd, registered with `reactor`; `None` in fallback mode.
    pidfd: Option<Async<OwnedFd>>,
    /// Re-check timer (fallback polling, or the pidfd safety net).
    timer: Option<Sleep>,
    /// Current fallback delay.
    delay: Duration,
}

impl fmt::Debug for ExitWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExitWatcher")
            .field("pid", &self.proc.pid())
            .field("pidfd", &self.pidfd.is_some())
            .finish()
    }
}

impl ExitWatcher {
    /// Watches `proc`, registering its pidfd (if any) with `reactor`.
    pub(crate) fn new(proc: Arc<ProcHandle>, reactor: &Reactor) -> ExitWatcher {
        let pidfd = pidfd_open(proc.pid()).and_then(|fd| Async::with_reactor(fd, reactor).ok());
        ExitWatcher {
            proc,
            reactor: reactor.clone(),
            pidfd,
            timer: None,
            delay: POLL_MIN,
        }
    }

    /// Polls for the child's exit; see the module documentation for `expecting`.
    pub(crate) fn poll_exit(&mut self, cx: &mut Context<'_>, expecting: bool) -> Poll<Reaped> {
        // Timers of a shut-down reactor complete at once: bound the rounds so
        // the caller's other duties (escalating to SIGKILL) still run.
        for _ in 0..4 {
            if let Some(reaped) = self.proc.try_reap() {
                self.timer = None;
                return Poll::Ready(reaped);
            }
            if let Some(pidfd) = &self.pidfd {
                let proc = &self.proc;
                // Readiness may be spurious (a new registration starts out
                // ready); `WouldBlock` clears it and waits for the real event.
                match pidfd.poll_io(Direction::Read, cx, |_| match proc.try_reap() {
                    Some(reaped) => Ok(reaped),
                    None => Err(std::io::ErrorKind::WouldBlock.into()),
                }) {
                    Poll::Ready(Ok(reaped)) => {
                        self.timer = None;
                        return Poll::Ready(reaped);
                    }
                    Poll::Ready(Err(_)) => {
                        // The reactor shut down: fall back to polling.
                        self.pidfd = None;
                        continue;
                    }
                    Poll::Pending if !expecting => return Poll::Pending,
                    Poll::Pending => {}
                }
            } else if !expecting {
                return Poll::Pending;
            }
            let period = if self.pidfd.is_some() {
                PIDFD_RECHECK
            } else {
                self.delay
            };
            let timer = self.timer.get_or_insert_with(|| {
                let _enter = self.reactor.enter();
                vedart_reactor::sleep(period)
            });
            match timer.poll_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    self.timer = None;
                    self.delay = (self.delay * 2).min(POLL_MAX);
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(all(test, not(feature = "loom")))] // real threads: loom's types work only inside a model
mod tests {
    use super::*;

    /// The fallback for kernels without `pidfd_open`: polling `waitpid`.
    #[test]
    #[allow(
        clippy::zombie_processes,
        reason = "the child is reaped through ProcHandle"
    )]
    fn the_polling_fallback_sees_the_exit() {
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 0.05; exit 4"])
            .spawn()
            .expect("sh starts");
        let proc = Arc::new(ProcHandle::new(child.id(), false));
        let reactor = Reactor::current();
        let mut watcher = ExitWatcher::new(proc, &reactor);
        watcher.pidfd = None;
        let reaped =
            futures::executor::block_on(futures::future::poll_fn(|cx| watcher.poll_exit(cx, true)));
        assert_eq!(reaped.and_then(|status| status.code()), Some(4));
    }

    #[test]
    #[allow(
        clippy::zombie_processes,
        reason = "the child is reaped through ProcHandle"
    )]
    fn without_an_expected_exit_the_fallback_arms_nothing() {
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep starts");
        let proc = Arc::new(ProcHandle::new(child.id(), false));
        let mut watcher = ExitWatcher::new(proc.clone(), &Reactor::current());
        watcher.pidfd = None;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(watcher.poll_exit(&mut cx, false).is_pending());
        assert!(watcher.timer.is_none());
        proc.signal(libc::SIGKILL);
        assert!(proc.reap_blocking().is_some());
        // Dropping std's handle does not wait, so it cannot race our reaping.
        drop(child);
    }
}
