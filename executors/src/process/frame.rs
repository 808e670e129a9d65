//! The wire format of the process pool: length-prefixed frames.
//!
//! Every frame is a fixed 13-byte header followed by a payload:
//!
//! ```text
//! offset  size  field
//! 0       4     payload length, u32 little-endian (header not included)
//! 4       8     id, u64 little-endian
//! 12      1     kind (see FrameKind)
//! 13      len   payload
//! ```
//!
//! The full protocol (which side sends which kind, how ids pair requests with
//! answers, control frames) is in `README.md` next to this file.
//!
//! # Messages longer than a frame
//!
//! A payload longer than the maximum frame size travels as a *message* of
//! several frames with one id: [`FrameKind::Part`] frames carrying its pieces in
//! order, then one frame of the message's real kind carrying the last piece.
//! The frames of one message are contiguous in the stream. [`encode_message`]
//! splits, [`FrameDecoder::decode_message`] joins.
//!
//! # Decoding
//!
//! [`FrameDecoder`] is incremental: feed it whatever a `read` returned, in
//! pieces of any size, and it hands back complete frames
//! ([`FrameDecoder::decode`]) or messages ([`FrameDecoder::decode_message`],
//! which fills one buffer for all the pieces: the payload is never copied).
//! Its invariants:
//!
//! - It never panics on any input.
//! - The only allocation that depends on the input is a frame's payload, and it
//!   is never larger than the frame's declared length, which is checked against
//!   the maximum frame size *before* anything is allocated. The payload grows as
//!   bytes arrive (doubling, capped at the declared length), so a header that
//!   announces a large frame and then stops costs only what actually arrived.
//! - A header with an unknown kind or a length over the maximum is an error; the
//!   decoder then stays failed and returns the same error on every later call,
//!   because a byte stream cannot be resynchronised after a bad header.
//! - A message longer than the maximum message size is not an error of the
//!   stream: its pieces are read and dropped as they arrive (nothing is kept),
//!   and it is reported as [`Message::TooLarge`], so that the one call it
//!   answers fails and the stream goes on.

use std::fmt;

/// Size of a frame header in bytes.
pub const HEADER_LEN: usize = 13;

/// The largest payload any frame can carry: the length field is a `u32`.
pub const MAX_ENCODABLE_PAYLOAD: usize = u32::MAX as usize;

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Parent to child: do this work. Answered by exactly one `Response` or
    /// `Error` with the same id.
    Request = 1,
    /// Child to parent: the successful result of the request with this id.
    Response = 2,
    /// Child to parent: the request with this id failed; the payload describes
    /// the failure (for Python, a pickled exception and its traceback).
    Error = 3,
    /// Parent to child, one-way (never answered): pool housekeeping such as
    /// installing or releasing a context. The payload starts with a
    /// [`ControlOp`] byte.
    Control = 4,
    /// Child to parent, empty payload: the child is about to begin the request
    /// with this id. Written (and flushed) before the request's work starts and
    /// before its answer, so the parent knows which requests may have run when
    /// a child dies or is killed: the others are safe to send again.
    Started = 5,
    /// Either direction: a piece of a message longer than the maximum frame
    /// size; the message's last frame, of its real kind, follows (see the
    /// module documentation).
    Part = 6,
}

impl FrameKind {
    /// The kind for a header byte, if it is one of the defined kinds.
    pub fn from_byte(byte: u8) -> Option<FrameKind> {
        match byte {
            1 => Some(FrameKind::Request),
            2 => Some(FrameKind::Response),
            3 => Some(FrameKind::Error),
            4 => Some(FrameKind::Control),
            5 => Some(FrameKind::Started),
            6 => Some(FrameKind::Part),
            _ => None,
        }
    }

    /// The header byte of this kind.
    pub fn as_byte(self) -> u8 {
        self as u8
    }
}

/// The first payload byte of a [`FrameKind::Control`] frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ControlOp {
    /// Install a context: the frame's id is the context id, the rest of the
    /// payload its bytes. The child keeps them until a `Release` with that id.
    Install = 1,
    /// Forget the context whose id is the frame's id. No further payload.
    Release = 2,
}

impl ControlOp {
    /// The op for a control payload's first byte, if it is a defined op.
    pub fn from_byte(byte: u8) -> Option<ControlOp> {
        match byte {
            1 => Some(ControlOp::Install),
            2 => Some(ControlOp::Release),
            _ => None,
        }
    }
}

/// One decoded frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Request id (or context id for control frames).
    pub id: u64,
    /// What the frame is.
    pub kind: FrameKind,
    /// The payload, exactly as long as the header said.
    pub payload: Vec<u8>,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl Frame {
    /// Appends this frame's encoding to `out`.
    ///
    /// # Errors
    ///
    /// A [`FrameErrorKind::TooLarge`] error if the payload exceeds
    /// [`MAX_ENCODABLE_PAYLOAD`].
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let header = encode_header(self.id, self.kind, self.payload.len())?;
        out.reserve(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.payload);
        Ok(())
    }
}

/// Appends the encoding of a message of `kind` with `payload` to `out`: one
/// frame if the payload fits `max_frame_size`, else [`FrameKind::Part`] frames
/// of `max_frame_size` bytes and a last frame of `kind` (see the module
/// documentation).
///
/// # Errors
///
/// A [`FrameErrorKind::TooLarge`] error if `max_frame_size` is 0 (only an empty
/// payload fits) or over [`MAX_ENCODABLE_PAYLOAD`].
///
/// # Examples
///
/// ```
/// use vedart_executors::process::frame::{FrameDecoder, FrameKind, Message, encode_message};
///
/// let mut wire = Vec::new();
/// encode_message(9, FrameKind::Response, &[7; 10], 4, &mut wire).unwrap();
/// assert_eq!(wire.len(), 3 * 13 + 10); // parts of 4 and 4 bytes, then the last 2
///
/// let mut decoder = FrameDecoder::new(4).max_message_size(1024);
/// let mut input = &wire[..];
/// match decoder.decode_message(&mut input).unwrap() {
///     Some(Message::Frame(frame)) => assert_eq!(frame.payload, [7; 10]),
///     other => panic!("{other:?}"),
/// }
/// ```
pub fn encode_message(
    id: u64,
    kind: FrameKind,
    payload: &[u8],
    max_frame_size: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    if (max_frame_size == 0 && !payload.is_empty()) || max_frame_size > MAX_ENCODABLE_PAYLOAD {
        return Err(FrameError {
            kind: FrameErrorKind::TooLarge,
            declared_len: payload.len() as u64,
            max: max_frame_size,
            kind_byte: kind.as_byte(),
        });
    }
    let mut rest = payload;
    while rest.len() > max_frame_size {
        let (piece, tail) = rest.split_at(max_frame_size);
        out.extend_from_slice(&encode_header(id, FrameKind::Part, piece.len())?);
        out.extend_from_slice(piece);
        rest = tail;
    }
    out.extend_from_slice(&encode_header(id, kind, rest.len())?);
    out.extend_from_slice(rest);
    Ok(())
}

/// Encodes a frame header.
///
/// # Errors
///
/// A [`FrameErrorKind::TooLarge`] error if `payload_len` does not fit the `u32`
/// length field.
///
/// # Examples
///
/// ```
/// use vedart_executors::process::frame::{FrameKind, encode_header};
///
/// let header = encode_header(7, FrameKind::Request, 3).unwrap();
/// assert_eq!(header, [3, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1]);
/// ```
pub fn encode_header(
    id: u64,
    kind: FrameKind,
    payload_len: usize,
) -> Result<[u8; HEADER_LEN], FrameError> {
    let len = u32::try_from(payload_len).map_err(|_| FrameError {
        kind: FrameErrorKind::TooLarge,
        declared_len: payload_len as u64,
        max: MAX_ENCODABLE_PAYLOAD,
        kind_byte: kind.as_byte(),
    })?;
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4..12].copy_from_slice(&id.to_le_bytes());
    header[12] = kind.as_byte();
    Ok(header)
}

/// What went wrong while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameErrorKind {
    /// A header declared a payload longer than the maximum frame size.
    TooLarge,
    /// A header carried a kind byte that is not a [`FrameKind`].
    UnknownKind,
    /// The stream ended in the middle of a frame (or of a message).
    Truncated,
    /// A frame of another id arrived in the middle of a message split into
    /// [`FrameKind::Part`] frames (see [`FrameError::kind_byte`] and
    /// [`FrameError::declared_len`] for the intruder).
    Interleaved,
}

/// A malformed frame stream. See [`FrameError::kind`].
#[derive(Clone, PartialEq, Eq)]
pub struct FrameError {
    kind: FrameErrorKind,
    declared_len: u64,
    max: usize,
    kind_byte: u8,
}

impl FrameError {
    /// What went wrong.
    pub fn kind(&self) -> FrameErrorKind {
        self.kind
    }

    /// The payload length the offending header declared (for `Truncated`, the
    /// number of bytes of the unfinished frame that did arrive).
    pub fn declared_len(&self) -> u64 {
        self.declared_len
    }

    /// The maximum frame size in force.
    pub fn max_frame_size(&self) -> usize {
        self.max
    }

    /// The kind byte of the offending header.
    pub fn kind_byte(&self) -> u8 {
        self.kind_byte
    }
}

impl fmt::Debug for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FrameErrorKind::TooLarge => write!(
                f,
                "frame payload of {} bytes exceeds the maximum frame size of {} bytes \
                 (longer payloads travel as several frames, see FrameKind::Part)",
                self.declared_len, self.max
            ),
            FrameErrorKind::Interleaved => write!(
                f,
                "a frame of kind {:#04x} for another id arrived inside a message split \
                 into Part frames",
                self.kind_byte
            ),
            FrameErrorKind::UnknownKind => {
                write!(
                    f,
                    "frame header has unknown kind byte {:#04x}",
                    self.kind_byte
                )
            }
            FrameErrorKind::Truncated => write!(
                f,
                "stream ended inside a frame after {} bytes",
                self.declared_len
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// An incremental decoder of a frame stream. See the module documentation.
///
/// # Examples
///
/// ```
/// use vedart_executors::process::frame::{Frame, FrameDecoder, FrameKind};
///
/// let mut wire = Vec::new();
/// Frame { id: 1, kind: FrameKind::Response, payload: b"hi".to_vec() }
///     .encode_into(&mut wire)
///     .unwrap();
///
/// let mut decoder = FrameDecoder::new(1024);
/// // Feed the bytes in two arbitrary pieces.
/// let (a, b) = wire.split_at(5);
/// let mut input = a;
/// assert_eq!(decoder.decode(&mut input).unwrap(), None);
/// let mut input = b;
/// let frame = decoder.decode(&mut input).unwrap().unwrap();
/// assert_eq!((frame.id, frame.kind, &frame.payload[..]), (1, FrameKind::Response, &b"hi"[..]));
/// assert!(decoder.is_idle());
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_size: usize,
    /// The longest message [`FrameDecoder::decode_message`] keeps.
    max_message_size: u64,
    /// Bytes of the current header received so far.
    header: [u8; HEADER_LEN],
    header_filled: usize,
    /// The frame being filled, once its header is complete and valid.
    body: Option<Body>,
    /// The message whose `Part` frames arrived so far (`decode_message`).
    partial: Option<Partial>,
    /// Set by the first error; every later call returns it.
    failed: Option<FrameError>,
}

#[derive(Debug)]
struct Body {
    id: u64,
    kind: FrameKind,
    /// This frame's payload length.
    len: usize,
    /// Bytes of this frame's payload received so far.
    filled: usize,
    /// The payload: this frame's, or the whole message's so far.
    payload: Vec<u8>,
    /// Message bytes that came in earlier frames (`decode_message`).
    before: u64,
    /// The message is over the maximum message size: drop what arrives.
    discard: bool,
}

#[derive(Debug)]
struct Partial {
    id: u64,
    payload: Vec<u8>,
    received: u64,
    discard: bool,
}

/// One message from [`FrameDecoder::decode_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A whole message: its id, its real kind (never `Part`) and its payload,
    /// joined from all its frames.
    Frame(Frame),
    /// A message longer than the maximum message size: its pieces were dropped
    /// as they arrived.
    TooLarge {
        /// The message's id.
        id: u64,
        /// Its real kind (that of its last frame).
        kind: FrameKind,
        /// Its length in bytes.
        len: u64,
        /// The maximum message size in force.
        max: u64,
    },
}

impl FrameDecoder {
    /// A decoder that accepts frame payloads of at most `max_frame_size` bytes
    /// (clamped to [`MAX_ENCODABLE_PAYLOAD`]), and messages of at most as many
    /// (see [`FrameDecoder::max_message_size`]).
    pub fn new(max_frame_size: usize) -> FrameDecoder {
        let max_frame_size = max_frame_size.min(MAX_ENCODABLE_PAYLOAD);
        FrameDecoder {
            max_frame_size,
            max_message_size: max_frame_size as u64,
            header: [0; HEADER_LEN],
            header_filled: 0,
            body: None,
            partial: None,
            failed: None,
        }
    }

    /// Sets the longest message [`FrameDecoder::decode_message`] keeps; a
    /// longer one is dropped as it arrives and reported as
    /// [`Message::TooLarge`].
    #[must_use]
    pub fn max_message_size(mut self, bytes: u64) -> FrameDecoder {
        self.max_message_size = bytes;
        self
    }

    /// The maximum payload size this decoder accepts.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Whether the decoder sits at a frame boundary (no partial frame or
    /// message buffered).
    pub fn is_idle(&self) -> bool {
        self.header_filled == 0 && self.body.is_none() && self.partial.is_none()
    }

    /// Bytes of the unfinished frame (and message) held so far.
    pub fn buffered(&self) -> usize {
        match (&self.body, &self.partial) {
            (Some(body), _) => HEADER_LEN + body.payload.len(),
            (None, Some(partial)) => self.header_filled + partial.payload.len(),
            (None, None) => self.header_filled,
        }
    }

    /// Capacity currently allocated for the unfinished frame's (or message's)
    /// payload.
    pub fn allocated(&self) -> usize {
        match (&self.body, &self.partial) {
            (Some(body), _) => body.payload.capacity(),
            (None, Some(partial)) => partial.payload.capacity(),
            (None, None) => 0,
        }
    }

    /// Consumes bytes from the front of `input` until one frame is complete
    /// (`Ok(Some(frame))`, `input` then starts after it) or `input` is empty
    /// (`Ok(None)`, the partial frame is kept for the next call). `Part` frames
    /// are returned as they are; see [`FrameDecoder::decode_message`] to join
    /// them. Use one of the two methods for the whole stream.
    ///
    /// # Errors
    ///
    /// A [`FrameError`] for a header over the maximum size or with an unknown
    /// kind. The decoder stays failed afterwards.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        Ok(match self.decode_inner(input, false)? {
            Some(Message::Frame(frame)) => Some(frame),
            // Only messages are ever too large.
            Some(Message::TooLarge { .. }) | None => None,
        })
    }

    /// Like [`FrameDecoder::decode`], but joins the frames of a message split
    /// into `Part` frames into one payload (filled in place as the pieces
    /// arrive), and reports a message over the maximum message size as
    /// [`Message::TooLarge`] instead of keeping it.
    ///
    /// # Errors
    ///
    /// Those of [`FrameDecoder::decode`], and [`FrameErrorKind::Interleaved`]
    /// for a frame of another id inside a message.
    pub fn decode_message(&mut self, input: &mut &[u8]) -> Result<Option<Message>, FrameError> {
        self.decode_inner(input, true)
    }

    fn decode_inner(
        &mut self,
        input: &mut &[u8],
        messages: bool,
    ) -> Result<Option<Message>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        loop {
            let Some(body) = self.body.as_mut() else {
                if input.is_empty() {
                    return Ok(None);
                }
                let take = (HEADER_LEN - self.header_filled).min(input.len());
                self.header[self.header_filled..self.header_filled + take]
                    .copy_from_slice(&input[..take]);
                self.header_filled += take;
                *input = &input[take..];
                if self.header_filled < HEADER_LEN {
                    return Ok(None);
                }
                self.start_body(messages)?;
                continue;
            };
            let take = (body.len - body.filled).min(input.len());
            if take > 0 {
                if !body.discard {
                    let end = body.payload.len() - body.filled + body.len;
                    reserve_capped(&mut body.payload, take, end);
                    body.payload.extend_from_slice(&input[..take]);
                }
                body.filled += take;
                *input = &input[take..];
            }
            if body.filled < body.len {
                return Ok(None);
            }
            self.header_filled = 0;
            let Some(body) = self.body.take() else {
                continue;
            };
            let received = body.before + body.len as u64;
            if messages && body.kind == FrameKind::Part {
                self.partial = Some(Partial {
                    id: body.id,
                    payload: body.payload,
                    received,
                    discard: body.discard,
                });
                continue;
            }
            return Ok(Some(if body.discard {
                Message::TooLarge {
                    id: body.id,
                    kind: body.kind,
                    len: received,
                    max: self.max_message_size,
                }
            } else {
                Message::Frame(Frame {
                    id: body.id,
                    kind: body.kind,
                    payload: body.payload,
                })
            }));
        }
    }

    /// Reports whether the stream may end here.
    ///
    /// # Errors
    ///
    /// A [`FrameErrorKind::Truncated`] error if a frame was left unfinished, or
    /// the decoder's earlier error.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.is_idle() {
            Ok(())
        } else {
            Err(FrameError {
                kind: FrameErrorKind::Truncated,
                declared_len: self.buffered() as u64,
                max: self.max_frame_size,
                kind_byte: self.header[12],
            })
        }
    }

    /// Validates the complete header and prepares the body (continuing the
    /// message in progress, when joining messages).
    fn start_body(&mut self, messages: bool) -> Result<(), FrameError> {
        let header = &self.header;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut id_bytes = [0u8; 8];
        id_bytes.copy_from_slice(&header[4..12]);
        let id = u64::from_le_bytes(id_bytes);
        let kind_byte = header[12];
        let error = |kind| FrameError {
            kind,
            declared_len: u64::from(len),
            max: self.max_frame_size,
            kind_byte,
        };
        let Some(kind) = FrameKind::from_byte(kind_byte) else {
            let err = error(FrameErrorKind::UnknownKind);
            self.failed = Some(err.clone());
            return Err(err);
        };
        // On 64-bit targets every u32 fits a usize; elsewhere a length that does
        // not fit is over any maximum anyway.
        let len = match usize::try_from(len) {
            Ok(len) if len <= self.max_frame_size => len,
            _ => {
                let err = error(FrameErrorKind::TooLarge);
                self.failed = Some(err.clone());
                return Err(err);
            }
        };
        let (payload, before, mut discard) = match self.partial.take() {
            Some(partial) if partial.id == id => {
                (partial.payload, partial.received, partial.discard)
            }
            Some(_) => {
                let err = error(FrameErrorKind::Interleaved);
                self.failed = Some(err.clone());
                return Err(err);
            }
            None => (Vec::new(), 0, false),
        };
        let mut payload = payload;
        if messages && !discard && before + len as u64 > self.max_message_size {
            discard = true;
            payload = Vec::new();
        }
        self.body = Some(Body {
            id,
            kind,
            len,
            filled: 0,
            payload,
            before,
            discard,
        });
        Ok(())
    }
}

/// Makes room for `additional` more bytes, growing geometrically but never past
/// `cap` (the frame's declared, already validated length).
fn reserve_capped(buf: &mut Vec<u8>, additional: usize, cap: usize) {
    let needed = buf.len() + additional;
    if needed <= buf.capacity() {
        return;
    }
    let target = needed.max(buf.capacity().saturating_mul(2)).min(cap);
    buf.reserve_exact(target - buf.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_pinned() {
        let header = encode_header(0x0102_0304_0506_0708, FrameKind::Error, 0x0a0b_0c0d).unwrap();
        assert_eq!(
            header,
            [0x0d, 0x0c, 0x0b, 0x0a, 8, 7, 6, 5, 4, 3, 2, 1, 3],
            "length LE, id LE, kind"
        );
        assert_eq!(FrameKind::Request.as_byte(), 1);
        assert_eq!(FrameKind::Response.as_byte(), 2);
        assert_eq!(FrameKind::Error.as_byte(), 3);
        assert_eq!(FrameKind::Control.as_byte(), 4);
        assert_eq!(FrameKind::Started.as_byte(), 5);
        assert_eq!(FrameKind::Part.as_byte(), 6);
        assert_eq!(FrameKind::from_byte(7), None);
        assert_eq!(ControlOp::Install as u8, 1);
        assert_eq!(ControlOp::Release as u8, 2);
    }

    #[test]
    fn payload_grows_geometrically_up_to_the_declared_length() {
        let mut buf = Vec::new();
        reserve_capped(&mut buf, 10, 1000);
        assert!(buf.capacity() >= 10 && buf.capacity() <= 1000);
        buf.extend_from_slice(&[0; 10]);
        reserve_capped(&mut buf, 10, 1000);
        assert!(buf.capacity() >= 20);
        buf.resize(900, 0);
        reserve_capped(&mut buf, 100, 1000);
        assert!(buf.capacity() >= 1000);
        assert!(buf.capacity() < 2 * 1000);
    }
}
