//! The operating-system layer of the process module: child handles that are safe
//! against pid reuse, `pidfd_open`, and starting pool children with fork+exec on
//! a dedicated thread.
//!
//! # Pid reuse
//!
//! A pid names a process only until it is reaped; after that the kernel may hand
//! the number to an unrelated process. [`ProcHandle`] therefore does both
//! signalling and reaping under one lock and records the exit status when it
//! reaps: a signal is only ever sent while the child is unreaped (a zombie still
//! holds its pid), so it can never hit a stranger.
//!
//! # Why pool children are started on their own thread
//!
//! Pool children ask the kernel to kill them when their parent dies
//! (`PR_SET_PDEATHSIG`), so a crashed parent leaves no orphans. Linux ties that
//! "parent" to the *thread* that forked, not the process: a child forked on a
//! short-lived thread (a blocking-pool thread that exits after its keep-alive, a
//! test thread) would be killed when that thread exits. All pool children are
//! therefore forked by one thread, `veda-process-spawn`, started on first use and
//! kept for the life of the process (a child made by `fork()` starts its own).
//! Forking there costs one thread hop, which is nothing next to fork+exec
//! itself.
//!
//! `std::process::Command` forks and then execs (a bare fork of a threaded
//! process is never used); the `pre_exec` hook that runs between the two only
//! makes async-signal-safe calls (`prctl`, `getppid`).

use crate::sync::unmodelled::{Arc, mpsc};
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

use vedart_reactor::fork::PerProcess;

use crate::sync::{Mutex, lock};

/// How a reaped child ended: its status, or `None` when somebody else reaped it
/// first (`waitpid` said `ECHILD`) and the status is lost.
pub(crate) type Reaped = Option<ExitStatus>;

/// A child process identified by pid, safe against pid reuse (see the module docs).
pub(crate) struct ProcHandle {
    pid: u32,
    /// The process that started the child. In a copy of the parent made by
    /// `fork()` (Python's multiprocessing does that) the pid is not our child,
    /// and signalling it would hit the real parent's child: everything is a
    /// no-op there.
    owner: u32,
    /// Whether the child leads its own process group, so that signals can go to
    /// the whole group (the child and anything it started).
    group: bool,
    /// `Some` once reaped. Signals are only sent while this is `None`.
    reaped: Mutex<Option<Reaped>>,
}

impl fmt::Debug for ProcHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcHandle")
            .field("pid", &self.pid)
            .field("reaped", &*lock(&self.reaped))
            .finish()
    }
}

impl ProcHandle {
    pub(crate) fn new(pid: u32, group: bool) -> ProcHandle {
        ProcHandle {
            pid,
            owner: std::process::id(),
            group,
            reaped: Mutex::new(None),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether this process started the child (and is not a `fork()` copy of
    /// the one that did).
    pub(crate) fn is_owner(&self) -> bool {
        std::process::id() == self.owner
    }

    /// Sends `signal` to the child (and its process group, if it leads one)
    /// unless it was already reaped. Returns whether the child was still unreaped.
    pub(crate) fn signal(&self, signal: libc::c_int) -> bool {
        let reaped = lock(&self.reaped);
        if reaped.is_some() || !self.is_owner() {
            return false;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return false;
        };
        if self.group {
            // SAFETY: kill has no memory-safety preconditions. The group id equals
            // the unreaped child's pid, which the kernel cannot reuse meanwhile.
            unsafe { libc::kill(-pid, signal) };
        }
        // SAFETY: as above; the child is unreaped, so `pid` is still ours. (The
        // group signal already reached it when it leads a group; a second
        // delivery of the same signal is harmless.)
        unsafe { libc::kill(pid, signal) };
        true
    }

    /// Reaps the child if it has exited, without blocking. `Some` once reaped
    /// (now or earlier).
    pub(crate) fn try_reap(&self) -> Option<Reaped> {
        self.reap(false)
    }

    /// Waits for the child to exit and reaps it. Blocks the calling thread: use
    /// only after SIGKILL, when the wait is short.
    pub(crate) fn reap_blocking(&self) -> Reaped {
        self.reap(true).unwrap_or(None)
    }

    /// The recorded outcome, if reaped.
    pub(crate) fn reaped(&self) -> Option<Reaped> {
        *lock(&self.reaped)
    }

    /// Whether the unreaped child has exited, without reaping it.
    fn has_exited(&self, pid: libc::pid_t) -> bool {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to overwrite.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT only inspects our own child and writes
        // into `info`, a valid siginfo_t.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: after a successful waitid the pid field is initialised (zero
        // when no child was waitable).
        rc == 0 && unsafe { info.si_pid() } != 0
    }

    fn reap(&self, block: bool) -> Option<Reaped> {
        let mut reaped = lock(&self.reaped);
        if let Some(outcome) = *reaped {
            return Some(outcome);
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            *reaped = Some(None);
            return *reaped;
        };
        if self.group && !block && self.has_exited(pid) {
            // Before the zombie is reaped (its pid, and so its group id, still
            // reserved), make sure nothing it started outlives it in its group.
            // SAFETY: kill has no memory-safety preconditions; see `signal`.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let flags = if block { 0 } else { libc::WNOHANG };
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid writes the status into a valid c_int; `pid` is our
            // unreaped child.
            let rc = unsafe { libc::waitpid(pid, &mut status, flags) };
            if rc == pid {
                *reaped = Some(Some(ExitStatus::from_raw(status)));
                return *reaped;
            }
            if rc == 0 {
                return None;
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // ECHILD: somebody else reaped it (a `waitpid(-1)` elsewhere in the
            // process); the pid is no longer ours either way.
            *reaped = Some(None);
            return *reaped;
        }
    }
}

/// Opens a pidfd for `pid` (Linux 5.3+): it becomes readable when the process
/// exits. `None` when the kernel lacks `pidfd_open`.
pub(crate) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; it
    // touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::O_CLOEXEC) };
    let fd = libc::c_int::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the syscall succeeded, so `fd` is a fresh fd owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a pipe, `(read end, write end)`, both close-on-exec so that no other
/// child inherits them by accident.
fn pipe() -> io::Result<(File, File)> {
    let mut fds: [libc::c_int; 2] = [-1; 2];
    // SAFETY: `fds` is a valid, writable array of two ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else, and
    // each is wrapped exactly once.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(read), File::from(write)))
}

/// What a pool child is started from; kept so that replacements can be started.
#[derive(Debug, Clone)]
pub(crate) struct SpawnConfig {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    /// `None` value: remove the variable.
    pub(crate) env: Vec<(OsString, Option<OsString>)>,
    pub(crate) env_clear: bool,
    pub(crate) current_dir: Option<PathBuf>,
}

/// A freshly started pool child: its handle and the parent's pipe ends.
/// Dropped without [`RawChild::into_parts`] (its pool closed while it was
/// starting), it kills and reaps the child at once.
pub(crate) struct RawChild {
    parts: Option<ChildParts>,
}

/// The pieces of a [`RawChild`].
pub(crate) struct ChildParts {
    pub(crate) proc: Arc<ProcHandle>,
    pub(crate) stdin: File,
    /// A second read end of the child's stdin, never read. While the parent
    /// holds it, writing to a dead child's stdin cannot fail with `EPIPE` (nor
    /// raise `SIGPIPE`): it fills the pipe and reports `WouldBlock`, and death is
    /// detected on stdout and the pidfd instead.
    pub(crate) stdin_keepalive: File,
    pub(crate) stdout: File,
    pub(crate) stderr: File,
}

impl RawChild {
    /// The child's pid.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.parts.as_ref().map(|parts| parts.proc.pid())
    }

    /// Takes the pieces; the caller becomes responsible for reaping the child.
    pub(crate) fn into_parts(mut self) -> Option<ChildParts> {
        self.parts.take()
    }
}

impl fmt::Debug for RawChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawChild")
            .field("pid", &self.pid())
            .finish()
    }
}

impl Drop for RawChild {
    fn drop(&mut self) {
        if let Some(parts) = self.parts.take() {
            parts.proc.signal(libc::SIGKILL);
            parts.proc.reap_blocking();
        }
    }
}

/// Forks and execs one pool child (on the calling thread: call through
/// [`spawn_thread`]).
fn spawn_pool_child(config: &SpawnConfig) -> io::Result<RawChild> {
    let (child_stdin, stdin) = pipe()?;
    let stdin_keepalive = child_stdin.try_clone()?;
    let (stdout, child_stdout) = pipe()?;
    let (stderr, child_stderr) = pipe()?;

    let mut command = Command::new(&config.program);
    command.args(&config.args);
    if config.env_clear {
        command.env_clear();
    }
    for (key, value) in &config.env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    if let Some(dir) = &config.current_dir {
        command.current_dir(dir);
    }
    command
        .stdin(Stdio::from(child_stdin))
        .stdout(Stdio::from(child_stdout))
        .stderr(Stdio::from(child_stderr))
        // Own process group: a terminal's Ctrl+C reaches only the parent, which
        // decides what to cancel, and termination signals reach grandchildren.
        .process_group(0);
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // Runs in the forked child before exec: only async-signal-safe calls, no
    // allocation (an `io::Error` built from an OS error code is a plain integer).
    let hook = move || {
        // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag on this process.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The parent may have died before the flag was set: then nobody would
        // ever kill us, so give up now.
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: `hook` is async-signal-safe, as pre_exec requires (see above).
    unsafe {
        command.pre_exec(hook);
    }
    let child = command.spawn()?;
    // `command` still holds the child's pipe ends; they must be closed here, or
    // the parent would never see EOF on the child's stdout.
    drop(command);
    Ok(RawChild {
        parts: Some(ChildParts {
            proc: Arc::new(ProcHandle::new(child.id(), true)),
            stdin,
            stdin_keepalive,
            stdout,
            stderr,
        }),
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// The `veda-process-spawn` thread's job queue, created on first use (and again
/// in a child made by `fork()`, where the parent's thread does not exist);
/// `None` if the thread could not be started, in which case callers fork on
/// their own thread (children then lose the parent-death signal's reliability,
/// nothing else).
fn spawn_thread() -> Option<&'static mpsc::Sender<Job>> {
    static SENDER: PerProcess<Option<mpsc::Sender<Job>>> = PerProcess::new();
    SENDER
        .get_or_init(|| {
            let (sender, receiver) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("veda-process-spawn".into())
                .spawn(move || {
                    for job in receiver {
                        // A panicking job must not take the spawn thread (and with
                        // it every child's parent-death signal) down.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .ok()?;
            Some(sender)
        })
        .as_ref()
}

/// Runs `job` on the spawn thread, or here if there is none.
fn run_on_spawn_thread(job: Job) {
    match spawn_thread() {
        Some(sender) => {
            if let Err(mpsc::SendError(job)) = sender.send(job) {
                job();
            }
        }
        None => job(),
    }
}

/// Starts a pool child on the spawn thread; the result arrives on the receiver.
pub(crate) fn spawn_pool_child_async(
    config: Arc<SpawnConfig>,
) -> futures::channel::oneshot::Receiver<io::Result<RawChild>> {
    let (tx, rx) = futures::channel::oneshot::channel();
    let job: Job = Box::new(move || {
        // If the receiver is gone the child comes back and `RawChild::drop` reaps it.
        let _ = tx.send(spawn_pool_child(&config));
    });
    run_on_spawn_thread(job);
    rx
}

/// Starts a pool child on the spawn thread and waits for it (blocking).
pub(crate) fn spawn_pool_child_blocking(config: Arc<SpawnConfig>) -> io::Result<RawChild> {
    let (tx, rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = tx.send(spawn_pool_child(&config));
    });
    run_on_spawn_thread(job);
    rx.recv()
        .unwrap_or_else(|_| Err(io::Error::other("the veda-process-spawn thread is gone")))
}
