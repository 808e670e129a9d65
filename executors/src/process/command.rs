//! [`Command`] and [`Child`]: async child processes with piped stdio.
//!
//! # Implementation
//!
//! A thin layer over [`std::process::Command`] (fork+exec): the parent's ends
//! of piped stdio become reactor pipes ([`PipeWriter`], [`PipeReader`]), and
//! [`Child::wait`] waits for the exit through a pidfd registered with the
//! reactor (polling `waitpid` on a timer where pidfds are missing). No thread is
//! started per child.
//!
//! A [`Child`] dropped before it was reaped is handed to the `veda-process`
//! background thread, which reaps it when it exits, so no zombie is left behind;
//! with [`Command::kill_on_drop`] it is killed first.

use crate::sync::unmodelled::Arc;
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

pub use std::process::Output;

use futures::AsyncReadExt;
use futures::future::poll_fn;
use vedart_reactor::{PipeReader, PipeWriter, Reactor};

use super::background;
use super::exit::ExitWatcher;
use super::sys::ProcHandle;

/// Builds and starts an async child process. Mirrors [`std::process::Command`].
///
/// # Examples
///
#[doc = example!()]
/// use vedart_executors::process::Command;
///
/// let output = futures::executor::block_on(Command::new("sh").args(["-c", "echo hi"]).output())?;
/// assert!(output.status.success());
/// assert_eq!(output.stdout, b"hi\n");
/// # std::io::Result::Ok(())
/// ```
pub struct Command {
    inner: std::process::Command,
    stdin_set: bool,
    stdout_set: bool,
    stderr_set: bool,
    kill_on_drop: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl Command {
    /// A command that runs `program`, with the parent's environment, working
    /// directory and (for [`Command::spawn`] and [`Command::status`]) stdio.
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            inner: std::process::Command::new(program),
            stdin_set: false,
            stdout_set: false,
            stderr_set: false,
            kill_on_drop: false,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env(key, value);
        self
    }

    /// Sets environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.inner.envs(vars);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env_remove(key);
        self
    }

    /// Clears the environment.
    pub fn env_clear(&mut self) -> &mut Command {
        self.inner.env_clear();
        self
    }

    /// Sets the working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.inner.current_dir(dir);
        self
    }

    /// Configures the child's stdin; `Stdio::piped()` gives [`Child::stdin`].
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdin(cfg);
        self.stdin_set = true;
        self
    }

    /// Configures the child's stdout; `Stdio::piped()` gives [`Child::stdout`].
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdout(cfg);
        self.stdout_set = true;
        self
    }

    /// Configures the child's stderr; `Stdio::piped()` gives [`Child::stderr`].
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stderr(cfg);
        self.stderr_set = true;
        self
    }

    /// Whether a [`Child`] dropped before it exited is killed (SIGKILL).
    /// Default: `false`, the child keeps running (and is reaped when it exits).
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Command {
        self.kill_on_drop = kill;
        self
    }

    /// The underlying standard command, for settings this type does not mirror
    /// (`std::os::unix::process::CommandExt`: uid, process group, `pre_exec`...).
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.inner
    }

    /// Starts the child. Its piped stdio is registered with
    /// [`Reactor::current`].
    ///
    /// # Errors
    ///
    /// The error of fork/exec (program not found, permission denied, ...), or of
    /// registering the pipes with the reactor.
    pub fn spawn(&mut self) -> io::Result<Child> {
        let mut child = self.inner.spawn()?;
        let proc = Arc::new(ProcHandle::new(child.id(), false));
        let pipes = (|| {
            Ok::<_, io::Error>((
                child
                    .stdin
                    .take()
                    .map(PipeWriter::from_child_stdin)
                    .transpose()?,
                child
                    .stdout
                    .take()
                    .map(PipeReader::from_child_stdout)
                    .transpose()?,
                child
                    .stderr
                    .take()
                    .map(PipeReader::from_child_stderr)
                    .transpose()?,
            ))
        })();
        match pipes {
            Ok((stdin, stdout, stderr)) => Ok(Child {
                stdin,
                stdout,
                stderr,
                proc,
                watcher: None,
                kill_on_drop: self.kill_on_drop,
            }),
            Err(err) => {
                proc.signal(libc::SIGKILL);
                proc.reap_blocking();
                Err(err)
            }
        }
    }

    /// Runs the child to completion (stdio inherited unless configured) and
    /// returns its exit status.
    ///
    /// # Errors
    ///
    /// As [`Command::spawn`] and [`Child::wait`].
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        let mut child = self.spawn()?;
        child.wait().await
    }

    /// Runs the child to completion, collecting its stdout and stderr (piped
    /// unless configured; stdin is empty unless configured).
    ///
    /// # Errors
    ///
    /// As [`Command::spawn`] and [`Child::wait_with_output`].
    pub async fn output(&mut self) -> io::Result<Output> {
        if !self.stdin_set {
            self.inner.stdin(Stdio::null());
        }
        if !self.stdout_set {
            self.inner.stdout(Stdio::piped());
        }
        if !self.stderr_set {
            self.inner.stderr(Stdio::piped());
        }
        let child = self.spawn();
        // Restore the defaults so that the command can be reused as documented.
        if !self.stdin_set {
            self.inner.stdin(Stdio::inherit());
        }
        if !self.stdout_set {
            self.inner.stdout(Stdio::inherit());
        }
        if !self.stderr_set {
            self.inner.stderr(Stdio::inherit());
        }
        child?.wait_with_output().await
    }
}

/// A running (or exited) child process; see [`Command::spawn`].
pub struct Child {
    /// The parent's end of the child's stdin, if piped. Dropping it gives the
    /// child EOF.
    pub stdin: Option<PipeWriter>,
    /// The parent's end of the child's stdout, if piped.
    pub stdout: Option<PipeReader>,
    /// The parent's end of the child's stderr, if piped.
    pub stderr: Option<PipeReader>,
    proc: Arc<ProcHandle>,
    /// Created on the first wait, with the waiting task's reactor.
    watcher: Option<ExitWatcher>,
    kill_on_drop: bool,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.proc.pid())
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish()
    }
}

fn status_lost() -> io::Error {
    io::Error::other("the child was reaped elsewhere in this process; its exit status is lost")
}

impl Child {
    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.proc.pid()
    }

    /// Sends SIGKILL, unless the child was already reaped (then it does nothing).
    ///
    /// # Errors
    ///
    /// Infallible today; fallible like [`std::process::Child::kill`].
    pub fn kill(&mut self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Sends `signal` (for example `libc::SIGTERM`), unless the child was
    /// already reaped (then it does nothing).
    ///
    /// # Errors
    ///
    /// Infallible today; kept fallible for platforms where signalling can fail.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        self.proc.signal(signal);
        Ok(())
    }

    /// The exit status if the child has exited (reaping it), without waiting.
    ///
    /// # Errors
    ///
    /// If the child was reaped by other code in this process (`waitpid(-1)`).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self.proc.try_reap() {
            None => Ok(None),
            Some(Some(status)) => Ok(Some(status)),
            Some(None) => Err(status_lost()),
        }
    }

    /// Waits for the child to exit and reaps it. Closes the child's stdin first
    /// (as [`std::process::Child::wait`] does), so a child reading its input to
    /// the end cannot deadlock with a parent that waits for it.
    ///
    /// # Errors
    ///
    /// If the child was reaped by other code in this process (`waitpid(-1)`).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        let Child { proc, watcher, .. } = self;
        let watcher =
            watcher.get_or_insert_with(|| ExitWatcher::new(proc.clone(), &Reactor::current()));
        match poll_fn(|cx| watcher.poll_exit(cx, true)).await {
            Some(status) => Ok(status),
            None => Err(status_lost()),
        }
    }

    /// Closes stdin, reads stdout and stderr to the end (those that are piped)
    /// while waiting for the child, and returns everything.
    ///
    /// # Errors
    ///
    /// A read error on a pipe, or as [`Child::wait`].
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let mut stdout_pipe = self.stdout.take();
        let mut stderr_pipe = self.stderr.take();
        let read_all = |pipe: &mut Option<PipeReader>| {
            let pipe = pipe.take();
            async move {
                let mut buf = Vec::new();
                if let Some(mut pipe) = pipe {
                    pipe.read_to_end(&mut buf).await?;
                }
                io::Result::Ok(buf)
            }
        };
        let (stdout, stderr) =
            futures::try_join!(read_all(&mut stdout_pipe), read_all(&mut stderr_pipe))?;
        let status = self.wait().await?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Not ours to kill or reap in a `fork()` copy of the parent.
        if !self.proc.is_owner() || self.proc.reaped().is_some() {
            return;
        }
        if self.kill_on_drop {
            self.proc.signal(libc::SIGKILL);
        }
        // Reap it in the background when it exits, so it never lingers as a zombie.
        let proc = self.proc.clone();
        let _ = background::reactor().and_then(|reactor| {
            let mut watcher = ExitWatcher::new(proc, &reactor);
            background::spawn(Box::pin(async move {
                let _ = poll_fn(|cx| watcher.poll_exit(cx, true)).await;
            }))
        });
    }
}
