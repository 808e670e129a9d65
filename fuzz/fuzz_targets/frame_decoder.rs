//! Fuzzes `FrameDecoder`: any byte stream, split at any points, yields valid
//! frames and at most one error, never a panic and never an allocation over the
//! maximum frame size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vedart_executors::process::frame::FrameDecoder;

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
});
