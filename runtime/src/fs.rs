//! Files and directories, on the blocking pool: each call runs the `std::fs`
//! operation on [`spawn_blocking`](crate::spawn_blocking) threads so that no
//! worker thread waits on the disk (regular files are always "ready" to
//! epoll, so the reactor cannot help).
//!
//! Inside a runtime the calls use its blocking pool; elsewhere, the global
//! runtime's. [`File`] implements the `futures` traits
//! [`AsyncRead`](futures::io::AsyncRead), [`AsyncWrite`](futures::io::AsyncWrite)
//! and [`AsyncSeek`](futures::io::AsyncSeek), so `AsyncReadExt::read_to_end`,
//! `AsyncWriteExt::write_all`, `futures::io::copy` and friends work on it.
//!
//! As with tokio's `File`, writes are *write-behind*: `write` copies the data
//! and returns while a blocking thread writes it, so call `flush` (or
//! [`File::sync_all`]) before relying on the data being in the file, and to
//! see a write error; `close` flushes. Reads fill a buffer of at least 16 KiB
//! per blocking call. A panic or shutdown of the blocking pool is an
//! `io::Error` naming it.
//!
//! # Examples
//!
#![doc = crate::example!()]
//! use vedart::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let dir = std::env::temp_dir().join(format!("vedart-fs-doc-{}", std::process::id()));
//! vedart::block_on(async {
//!     vedart::fs::create_dir_all(&dir).await?;
//!     let path = dir.join("hello.txt");
//!     vedart::fs::write(&path, "hello").await?;
//!
//!     let mut file = vedart::fs::OpenOptions::new().append(true).open(&path).await?;
//!     file.write_all(b", world").await?;
//!     file.flush().await?;
//!
//!     let mut text = String::new();
//!     vedart::fs::File::open(&path).await?.read_to_string(&mut text).await?;
//!     assert_eq!(text, "hello, world");
//!     assert_eq!(vedart::fs::metadata(&path).await?.len(), 12);
//!     vedart::fs::remove_dir_all(&dir).await
//! })?;
//! # Ok::<_, std::io::Error>(())
//! ```

use std::fmt;
use std::fs::{Metadata, Permissions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::io::{AsyncRead, AsyncSeek, AsyncWrite};

use crate::{Handle, JoinHandle};

/// Runs `f` on the current runtime's blocking pool (or the global
/// runtime's), as one `io::Result`.
async fn asyncify<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    flatten(spawn_blocking(f)?.await)
}

fn spawn_blocking<T, F>(f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Handle::try_current() {
        Some(handle) => Ok(handle.spawn_blocking(f)),
        None => Ok(crate::Runtime::global()?.handle().spawn_blocking(f)),
    }
}

fn flatten<T>(result: Result<io::Result<T>, crate::JoinError>) -> io::Result<T> {
    result.unwrap_or_else(|error| Err(blocking_failed(error)))
}

fn blocking_failed(error: crate::JoinError) -> io::Error {
    io::Error::other(format!(
        "vedart::fs: the blocking operation failed: {error}"
    ))
}

/// Reads the whole file.
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::read(path)).await
}

/// Reads the whole file as UTF-8 (`InvalidData` if it is not).
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::read_to_string(path)).await
}

/// Creates or truncates the file and writes `contents` to it.
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let (path, contents) = (path.as_ref().to_owned(), contents.as_ref().to_owned());
    asyncify(move || std::fs::write(path, contents)).await
}

/// The metadata of `path`, following symlinks.
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::metadata(path)).await
}

/// The metadata of `path` itself (a symlink is not followed).
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::symlink_metadata(path)).await
}

/// Creates a directory (its parent must exist).
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::create_dir(path)).await
}

/// Creates a directory and any missing parents.
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::create_dir_all(path)).await
}

/// Removes a file.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::remove_file(path)).await
}

/// Removes an empty directory.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::remove_dir(path)).await
}

/// Removes a directory and everything in it.
pub async fn remove_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::remove_dir_all(path)).await
}

/// Renames `from` to `to`, replacing `to` if it exists.
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref().to_owned(), to.as_ref().to_owned());
    asyncify(move || std::fs::rename(from, to)).await
}

/// Copies the contents and permissions of `from` to `to`; returns the bytes copied.
pub async fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
    let (from, to) = (from.as_ref().to_owned(), to.as_ref().to_owned());
    asyncify(move || std::fs::copy(from, to)).await
}

/// The absolute path with every symlink resolved.
pub async fn canonicalize(path: impl AsRef<Path>) -> io::Result<PathBuf> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::canonicalize(path)).await
}

/// Sets the permissions of `path`.
pub async fn set_permissions(path: impl AsRef<Path>, permissions: Permissions) -> io::Result<()> {
    let path = path.as_ref().to_owned();
    asyncify(move || std::fs::set_permissions(path, permissions)).await
}

/// The entries of a directory, read in batches on the blocking pool.
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<ReadDir> {
    let path = path.as_ref().to_owned();
    let entries = asyncify(move || std::fs::read_dir(path)).await?;
    Ok(ReadDir {
        entries: Some(entries),
        batch: std::collections::VecDeque::new(),
    })
}

/// The entries of a directory: [`next_entry`](ReadDir::next_entry) until `None`.
pub struct ReadDir {
    /// `None` once exhausted.
    entries: Option<std::fs::ReadDir>,
    batch: std::collections::VecDeque<io::Result<DirEntry>>,
}

/// How many entries one blocking call reads.
const READ_DIR_BATCH: usize = 64;

impl ReadDir {
    /// The next entry, or `None` when the directory is exhausted. The order
    /// is the file system's. Cancellation safe.
    pub async fn next_entry(&mut self) -> io::Result<Option<DirEntry>> {
        loop {
            if let Some(entry) = self.batch.pop_front() {
                return entry.map(Some);
            }
            let Some(mut entries) = self.entries.take() else {
                return Ok(None);
            };
            // Hand the iterator to a blocking thread and back.
            let (entries, batch) = flatten(
                spawn_blocking(move || {
                    let batch: Vec<_> = entries
                        .by_ref()
                        .take(READ_DIR_BATCH)
                        .map(|entry| entry.map(DirEntry))
                        .collect();
                    Ok((entries, batch))
                })?
                .await,
            )?;
            if batch.len() == READ_DIR_BATCH {
                self.entries = Some(entries);
            }
            self.batch.extend(batch);
            if self.batch.is_empty() {
                return Ok(None);
            }
        }
    }
}

impl fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadDir")
            .field("buffered", &self.batch.len())
            .finish()
    }
}

/// One entry of a [`ReadDir`].
#[derive(Debug)]
pub struct DirEntry(std::fs::DirEntry);

impl DirEntry {
    /// The full path: the directory's path joined with the file name.
    pub fn path(&self) -> PathBuf {
        self.0.path()
    }

    /// The bare file name.
    pub fn file_name(&self) -> std::ffi::OsString {
        self.0.file_name()
    }

    /// The entry's metadata (not following a symlink).
    pub async fn metadata(&self) -> io::Result<Metadata> {
        symlink_metadata(self.path()).await
    }

    /// The entry's type (usually known without a system call).
    pub async fn file_type(&self) -> io::Result<std::fs::FileType> {
        match self.0.file_type() {
            Ok(file_type) => Ok(file_type),
            Err(_) => Ok(self.metadata().await?.file_type()),
        }
    }
}

/// Options for opening a file, as [`std::fs::OpenOptions`]; `open` runs on
/// the blocking pool.
#[derive(Clone, Debug)]
pub struct OpenOptions(std::fs::OpenOptions);

impl OpenOptions {
    /// All options off: set at least `read`, `write` or `append`.
    pub fn new() -> OpenOptions {
        OpenOptions(std::fs::OpenOptions::new())
    }

    /// Open for reading.
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.0.read(read);
        self
    }

    /// Open for writing.
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.0.write(write);
        self
    }

    /// Open for appending: every write goes to the end.
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.0.append(append);
        self
    }

    /// Truncate the file to 0 bytes on open.
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.0.truncate(truncate);
        self
    }

    /// Create the file if it does not exist.
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.0.create(create);
        self
    }

    /// Create the file, failing if it exists.
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.0.create_new(create_new);
        self
    }

    /// Opens `path` with these options.
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let (options, path) = (self.0.clone(), path.as_ref().to_owned());
        asyncify(move || options.open(path))
            .await
            .map(File::from_std)
    }
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

/// Reads of at least this many bytes per blocking call.
const READ_AHEAD: usize = 16 * 1024;
/// At most this many bytes are handed to one blocking write.
const MAX_WRITE: usize = 2 * 1024 * 1024;

/// An open file whose reads, writes and seeks run on the blocking pool (see
/// [the module docs](self) for write-behind).
pub struct File {
    std: Arc<std::fs::File>,
    state: State,
    /// A write-behind error not yet reported.
    write_error: Option<io::Error>,
    /// A seek is in flight whose position `poll_seek` has not returned.
    seeking: bool,
}

enum State {
    /// No operation in flight. The buffer holds read-ahead bytes (`pos..`
    /// not yet returned) or nothing.
    Idle(Buffer),
    /// A blocking operation owns the buffer.
    Busy(JoinHandle<(Operation, Buffer)>),
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    pos: usize,
}

impl Buffer {
    fn unread(&self) -> &[u8] {
        &self.bytes[self.pos..]
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.pos = 0;
    }
}

enum Operation {
    Read(io::Result<()>),
    Write(io::Result<()>),
    Seek(io::Result<u64>),
}

impl File {
    /// Opens `path` for reading.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Creates (or truncates) `path` and opens it for writing.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// Wraps an open `std` file.
    pub fn from_std(file: std::fs::File) -> File {
        File {
            std: Arc::new(file),
            state: State::Idle(Buffer::default()),
            write_error: None,
            seeking: false,
        }
    }

    /// Completes the operation in flight, if any, and returns it; a failed
    /// write is kept in `write_error` to be reported by the next operation.
    fn poll_complete(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Operation>>> {
        let State::Busy(task) = &mut self.state else {
            return Poll::Ready(Ok(None));
        };
        let (operation, buffer) = match ready!(Pin::new(task).poll(cx)) {
            Ok(done) => done,
            Err(error) => {
                self.state = State::Idle(Buffer::default());
                return Poll::Ready(Err(blocking_failed(error)));
            }
        };
        self.state = State::Idle(buffer);
        Poll::Ready(Ok(Some(match operation {
            Operation::Write(Err(error)) => {
                self.write_error = Some(error);
                Operation::Write(Ok(()))
            }
            other => other,
        })))
    }

    /// The buffer while idle (callers check with `poll_complete` first).
    fn take_idle_buffer(&mut self) -> Buffer {
        match &mut self.state {
            State::Idle(buffer) => std::mem::take(buffer),
            State::Busy(_) => Buffer::default(),
        }
    }

    fn idle_unread(&self) -> usize {
        match &self.state {
            State::Idle(buffer) => buffer.unread().len(),
            State::Busy(_) => 0,
        }
    }

    /// Starts `operation` on a blocking thread with the buffer.
    fn start(
        &mut self,
        buffer: Buffer,
        operation: impl FnOnce(&std::fs::File, Buffer) -> (Operation, Buffer) + Send + 'static,
    ) -> io::Result<()> {
        let file = self.std.clone();
        let task = spawn_blocking(move || operation(&file, buffer));
        match task {
            Ok(task) => {
                self.state = State::Busy(task);
                Ok(())
            }
            Err(error) => {
                self.state = State::Idle(Buffer::default());
                Err(error)
            }
        }
    }

    /// Starts a seek to `target`, counting read-ahead bytes not yet returned.
    fn start_seek(&mut self, target: SeekFrom) -> io::Result<()> {
        let mut buffer = self.take_idle_buffer();
        let unread = buffer.unread().len() as i64;
        buffer.clear();
        let target = match target {
            SeekFrom::Current(offset) => SeekFrom::Current(offset - unread),
            other => other,
        };
        self.seeking = true;
        self.start(buffer, move |mut file, buffer| {
            (Operation::Seek(file.seek(target)), buffer)
        })
    }

    fn take_write_error(&mut self) -> io::Result<()> {
        match self.write_error.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Finishes the operation in flight and reports a write-behind error.
    async fn settle(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_complete(cx).map_ok(|_| ())).await?;
        self.take_write_error()
    }

    /// Moves the OS position back over read-ahead bytes not yet returned,
    /// so what follows starts where the reader stopped.
    async fn discard_read_ahead(&mut self) -> io::Result<()> {
        if self.idle_unread() > 0 {
            std::future::poll_fn(|cx| Pin::new(&mut *self).poll_seek(cx, SeekFrom::Current(0)))
                .await?;
        }
        Ok(())
    }

    /// Flushes pending writes and syncs data and metadata to the device.
    pub async fn sync_all(&mut self) -> io::Result<()> {
        self.settle().await?;
        let file = self.std.clone();
        asyncify(move || file.sync_all()).await
    }

    /// Flushes pending writes and syncs the data to the device.
    pub async fn sync_data(&mut self) -> io::Result<()> {
        self.settle().await?;
        let file = self.std.clone();
        asyncify(move || file.sync_data()).await
    }

    /// Truncates or extends the file to `size` bytes (after pending writes).
    pub async fn set_len(&mut self, size: u64) -> io::Result<()> {
        self.settle().await?;
        self.discard_read_ahead().await?;
        let file = self.std.clone();
        asyncify(move || file.set_len(size)).await
    }

    /// The file's metadata (after pending writes).
    pub async fn metadata(&mut self) -> io::Result<Metadata> {
        self.settle().await?;
        let file = self.std.clone();
        asyncify(move || file.metadata()).await
    }

    /// The `std` file, after pending writes, positioned where the async
    /// reads and writes left it.
    pub async fn into_std(mut self) -> io::Result<std::fs::File> {
        self.settle().await?;
        self.discard_read_ahead().await?;
        // No operation is in flight, so no blocking thread holds a clone;
        // should one still, a duplicate descriptor shares the position.
        match Arc::try_unwrap(self.std) {
            Ok(file) => Ok(file),
            Err(shared) => shared.try_clone(),
        }
    }
}

impl AsyncRead for File {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let completed = ready!(this.poll_complete(cx))?;
            let read_done = match completed {
                Some(Operation::Read(result)) => {
                    result?;
                    true
                }
                _ => false,
            };
            if let State::Idle(buffer) = &mut this.state {
                if !buffer.unread().is_empty() {
                    let n = buffer.unread().len().min(out.len());
                    out[..n].copy_from_slice(&buffer.unread()[..n]);
                    buffer.pos += n;
                    return Poll::Ready(Ok(n));
                }
            }
            // A read that came back empty is the end of the file.
            if read_done || out.is_empty() {
                return Poll::Ready(Ok(0));
            }
            this.take_write_error()?;
            let mut buffer = this.take_idle_buffer();
            buffer.clear();
            let want = out.len().max(READ_AHEAD);
            this.start(buffer, move |mut file, mut buffer| {
                let result = read_into(&mut file, &mut buffer, want);
                (Operation::Read(result), buffer)
            })?;
        }
    }
}

/// One `read` of up to `want` bytes into the buffer (retrying `Interrupted`).
fn read_into(file: &mut &std::fs::File, buffer: &mut Buffer, want: usize) -> io::Result<()> {
    buffer.bytes.resize(want, 0);
    let result = loop {
        match file.read(&mut buffer.bytes) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    buffer.bytes.truncate(*result.as_ref().unwrap_or(&0));
    buffer.pos = 0;
    result.map(|_| ())
}

impl AsyncWrite for File {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if let Some(Operation::Seek(Err(error))) = ready!(this.poll_complete(cx))? {
                this.seeking = false;
                return Poll::Ready(Err(error));
            }
            this.seeking = false;
            if this.idle_unread() > 0 {
                // Read-ahead bytes sit between the reader's position and the
                // OS position: move back over them first.
                this.start_seek(SeekFrom::Current(0))?;
                continue;
            }
            this.take_write_error()?;
            let mut buffer = this.take_idle_buffer();
            buffer.clear();
            let n = data.len().min(MAX_WRITE);
            buffer.bytes.extend_from_slice(&data[..n]);
            this.start(buffer, |mut file, mut buffer| {
                let result = file.write_all(&buffer.bytes);
                buffer.clear();
                (Operation::Write(result), buffer)
            })?;
            return Poll::Ready(Ok(n));
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_complete(cx))?;
        Poll::Ready(this.take_write_error())
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl AsyncSeek for File {
    fn poll_seek(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        target: SeekFrom,
    ) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        loop {
            let completed = ready!(this.poll_complete(cx))?;
            if let (true, Some(Operation::Seek(position))) = (this.seeking, completed) {
                // The seek this call (or an earlier poll of it) started.
                this.seeking = false;
                return Poll::Ready(position);
            }
            this.take_write_error()?;
            this.start_seek(target)?;
        }
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File").field("std", &self.std).finish()
    }
}
