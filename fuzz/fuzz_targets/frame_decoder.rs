//! Fuzzes `FrameDecoder`: any byte stream, split at any points, yields valid
//! frames and at most one error, never a panic and never an allocation over the
//! maximum frame size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vedart_executors::process::frame::{FrameDecoder, FrameKind, Message};

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the maximum frame size and the piece size, so
    // the fuzzer explores both small limits and arbitrary splits.
    let (config, stream) = data.split_at(data.len().min(2));
    let max = usize::from(config.first().copied().unwrap_or(0)) * 16;
    let piece = usize::from(config.get(1).copied().unwrap_or(1)).max(1);
    let mut decoder = FrameDecoder::new(max);
    for chunk in stream.chunks(piece) {
        let mut input = chunk;
        loop {
            assert!(decoder.allocated() <= max);
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => assert!(frame.payload.len() <= max),
                Ok(None) => {
                    assert!(input.is_empty());
                    break;
                }
                Err(_) => {
                    // Sticky: the same error again, whatever follows.
                    let mut more: &[u8] = b"\x00";
                    assert!(decoder.decode(&mut more).is_err());
                    return;
                }
            }
        }
    }
    let _ = decoder.finish();

    // The same stream as messages: pieces joined into buffers never larger
    // than the maximum message size, oversized messages dropped.
    let max_message = max as u64 * 3;
    let mut messages = FrameDecoder::new(max).max_message_size(max_message);
    for chunk in stream.chunks(piece) {
        let mut input = chunk;
        loop {
            assert!(messages.allocated() as u64 <= max_message);
            match messages.decode_message(&mut input) {
                Ok(Some(Message::Frame(frame))) => {
                    assert!(frame.payload.len() as u64 <= max_message);
                    assert_ne!(frame.kind, FrameKind::Part);
                }
                Ok(Some(Message::TooLarge { len, .. })) => assert!(len > max_message),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
