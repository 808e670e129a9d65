//! The write side of a pool child: frames queued for its stdin.
//!
//! A call writes its frame itself when nothing is queued ahead of it (one
//! `writev`, no wake-up); whatever the pipe does not take stays in the queue
//! for the child's driver, which flushes it when the pipe has room. Frames are
//! written whole and in order, so a worker reading its stdin sees each context
//! install before the first request that needs it. A payload longer than the
//! maximum frame size goes out as one message of several frames (`Part` frames,
//! then the last one; see `frame`), straight from the caller's buffer.

use crate::sync::unmodelled::Arc;
use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{self, IoSlice, Write};

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

/// One message waiting to be written: one frame, or several when its payload
/// is longer than the maximum frame size.
pub(crate) struct OutFrame {
    /// Each frame's header, plus the control op byte in the first one of a
    /// control message, and the range of `body` the frame carries after it.
    frames: Vec<Piece>,
    body: Option<Arc<Vec<u8>>>,
    /// Bytes of the whole message (headers and payload) already written.
    pub(crate) written: usize,
    /// The request id for requests; 0 for control frames.
    pub(crate) request: u64,
}

struct Piece {
    head: [u8; HEADER_LEN + 1],
    head_len: usize,
    body: std::ops::Range<usize>,
}

impl OutFrame {
    pub(crate) fn request(
        id: u64,
        payload: &Arc<Vec<u8>>,
        max_frame_size: usize,
    ) -> Result<OutFrame, FrameError> {
        OutFrame::split(
            id,
            FrameKind::Request,
            None,
            Some(payload),
            max_frame_size,
            id,
        )
    }

    pub(crate) fn control(
        id: u64,
        op: ControlOp,
        payload: Option<&Arc<Vec<u8>>>,
        max_frame_size: usize,
    ) -> Result<OutFrame, FrameError> {
        OutFrame::split(
            id,
            FrameKind::Control,
            Some(op as u8),
            payload,
            max_frame_size,
            0,
        )
    }

    /// The frames of a message whose payload is `prefix` then `body`, each
    /// frame's payload at most `max_frame_size` bytes.
    fn split(
        id: u64,
        kind: FrameKind,
        prefix: Option<u8>,
        body: Option<&Arc<Vec<u8>>>,
        max_frame_size: usize,
        request: u64,
    ) -> Result<OutFrame, FrameError> {
        let max = max_frame_size.max(1);
        let prefix_len = usize::from(prefix.is_some());
        let body_len = body.map_or(0, |b| b.len());
        let mut frames = Vec::with_capacity(1 + (prefix_len + body_len) / max);
        let mut at = 0;
        loop {
            let first = frames.is_empty();
            let room = if first {
                max - prefix_len.min(max)
            } else {
                max
            };
            let end = body_len.min(at + room);
            let last = end == body_len;
            let payload_len = end - at + if first { prefix_len } else { 0 };
            let frame_kind = if last { kind } else { FrameKind::Part };
            let header = encode_header(id, frame_kind, payload_len)?;
            let mut head = [0; HEADER_LEN + 1];
            head[..HEADER_LEN].copy_from_slice(&header);
            let mut head_len = HEADER_LEN;
            if let (true, Some(op)) = (first, prefix) {
                head[HEADER_LEN] = op;
                head_len += 1;
            }
            frames.push(Piece {
                head,
                head_len,
                body: at..end,
            });
            at = end;
            if last {
                break;
            }
        }
        Ok(OutFrame {
            frames,
            body: body.cloned(),
            written: 0,
            request,
        })
    }

    fn len(&self) -> usize {
        self.frames
            .iter()
            .map(|piece| piece.head_len + piece.body.len())
            .sum()
    }

    /// Puts the unwritten parts into `slices`, as many as fit; returns how
    /// many.
    fn unwritten<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        let mut skip = self.written;
        for piece in &self.frames {
            for part in [
                &piece.head[..piece.head_len],
                self.body
                    .as_ref()
                    .map_or(&[][..], |b| &b[piece.body.clone()]),
            ] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                if count == slices.len() {
                    return count;
                }
                slices[count] = IoSlice::new(&part[skip..]);
                skip = 0;
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
                if count == MAX_IOVECS {
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
