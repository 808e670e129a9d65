//! The write side of a pool child: frames queued for its stdin.
//!
//! A call writes its frame itself when nothing is queued ahead of it (one
//! `writev`, no wake-up); whatever the pipe does not take stays in the queue
//! for the child's driver, which flushes it when the pipe has room. Frames are
//! written whole and in order, so a worker reading its stdin sees each context
//! install before the first request that needs it.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use vedart_reactor::Async;

use super::frame::{ControlOp, FrameError, FrameKind, HEADER_LEN, encode_header};
use crate::sync::atomic::{AtomicU64, Ordering};

/// Frames gathered into one `writev`.
const MAX_IOVECS: usize = 64;

pub(crate) struct Writer {
    /// `None` once closed (retirement, pool drop).
    pub(crate) stdin: Option<Async<File>>,
    /// Frames not yet (fully) written, in order.
    pub(crate) queue: VecDeque<OutFrame>,
    /// Contexts whose install frame was queued on this child.
    pub(crate) installed: HashSet<u64>,
}

/// One frame waiting to be written.
pub(crate) struct OutFrame {
    /// Header, plus the control op byte for control frames.
    head: [u8; HEADER_LEN + 1],
    head_len: usize,
    body: Option<Arc<Vec<u8>>>,
    /// Bytes of `head` + `body` already written.
    pub(crate) written: usize,
    /// The request id for requests; 0 for control frames.
    pub(crate) request: u64,
}

impl OutFrame {
    pub(crate) fn request(id: u64, payload: &Arc<Vec<u8>>) -> Result<OutFrame, FrameError> {
        let header = encode_header(id, FrameKind::Request, payload.len())?;
        let mut head = [0; HEADER_LEN + 1];
        head[..HEADER_LEN].copy_from_slice(&header);
        Ok(OutFrame {
            head,
            head_len: HEADER_LEN,
            body: Some(payload.clone()),
            written: 0,
            request: id,
        })
    }

    pub(crate) fn control(
        id: u64,
        op: ControlOp,
        payload: Option<&Arc<Vec<u8>>>,
    ) -> Result<OutFrame, FrameError> {
        let len = 1 + payload.map_or(0, |p| p.len());
        let header = encode_header(id, FrameKind::Control, len)?;
        let mut head = [0; HEADER_LEN + 1];
        head[..HEADER_LEN].copy_from_slice(&header);
        head[HEADER_LEN] = op as u8;
        Ok(OutFrame {
            head,
            head_len: HEADER_LEN + 1,
            body: payload.cloned(),
            written: 0,
            request: 0,
        })
    }

    fn len(&self) -> usize {
        self.head_len + self.body.as_ref().map_or(0, |b| b.len())
    }

    /// Puts the unwritten parts into `slices`; returns how many (0 to 2).
    fn unwritten<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        if self.written < self.head_len {
            slices[count] = IoSlice::new(&self.head[self.written..self.head_len]);
            count += 1;
        }
        if let Some(body) = &self.body {
            let from = self.written.saturating_sub(self.head_len);
            if from < body.len() {
                slices[count] = IoSlice::new(&body[from..]);
                count += 1;
            }
        }
        count
    }
}

/// Writes queued frames until the queue is empty (`Ok`) or the pipe is full
/// (`WouldBlock`), counting bytes into `sent`.
pub(crate) fn flush_queue(
    pipe: &File,
    queue: &mut VecDeque<OutFrame>,
    sent: &AtomicU64,
) -> io::Result<()> {
    while !queue.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for frame in queue.iter() {
                if count + 2 > MAX_IOVECS {
                    break;
                }
                count += frame.unwritten(&mut slices[count..]);
            }
            (&*pipe).write_vectored(&slices[..count])
        };
        let mut n = match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        sent.fetch_add(n as u64, Ordering::Relaxed);
        while n > 0 {
            let Some(front) = queue.front_mut() else {
                break;
            };
            let left = front.len() - front.written;
            if n >= left {
                n -= left;
                queue.pop_front();
            } else {
                front.written += n;
                n = 0;
            }
        }
    }
    Ok(())
}
