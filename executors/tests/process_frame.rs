//! Tests of the process pool's frame codec, including a property test that
//! feeds the decoder arbitrary bytes.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use proptest::prelude::*;
use vedart_executors::process::frame::{
    Frame, FrameDecoder, FrameErrorKind, FrameKind, HEADER_LEN, Message, encode_header,
    encode_message,
};

fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut wire = Vec::new();
    for frame in frames {
        frame.encode_into(&mut wire).unwrap();
    }
    wire
}

/// Decodes `wire` fed in pieces of the given sizes (cycled).
fn decode_in_pieces(
    decoder: &mut FrameDecoder,
    wire: &[u8],
    pieces: &[usize],
) -> Result<Vec<Frame>, vedart_executors::process::frame::FrameError> {
    let mut frames = Vec::new();
    let mut rest = wire;
    let mut sizes = pieces.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(size);
        rest = tail;
        let mut input = piece;
        while let Some(frame) = decoder.decode(&mut input)? {
            frames.push(frame);
        }
        assert!(input.is_empty(), "decode returned None with input left");
    }
    Ok(frames)
}

#[test]
fn frames_round_trip_byte_by_byte() {
    let frames = vec![
        Frame {
            id: 1,
            kind: FrameKind::Request,
            payload: b"hello".to_vec(),
        },
        Frame {
            id: u64::MAX,
            kind: FrameKind::Response,
            payload: Vec::new(),
        },
        Frame {
            id: 3,
            kind: FrameKind::Error,
            payload: vec![0; 1000],
        },
        Frame {
            id: 4,
            kind: FrameKind::Control,
            payload: vec![1, 2, 3],
        },
    ];
    let wire = encode(&frames);
    let mut decoder = FrameDecoder::new(4096);
    assert_eq!(decode_in_pieces(&mut decoder, &wire, &[1]).unwrap(), frames);
    assert!(decoder.is_idle());
    assert!(decoder.finish().is_ok());
}

#[test]
fn an_oversized_header_is_rejected_before_any_allocation() {
    let mut decoder = FrameDecoder::new(100);
    let header = encode_header(9, FrameKind::Response, 101).unwrap();
    let mut input = &header[..];
    let err = decoder.decode(&mut input).unwrap_err();
    assert_eq!(err.kind(), FrameErrorKind::TooLarge);
    assert_eq!(err.declared_len(), 101);
    assert_eq!(err.max_frame_size(), 100);
    assert_eq!(decoder.allocated(), 0);
    // The decoder stays failed.
    let mut more: &[u8] = b"anything";
    assert_eq!(
        decoder.decode(&mut more).unwrap_err().kind(),
        FrameErrorKind::TooLarge
    );
    assert!(decoder.finish().is_err());
}

#[test]
fn an_unknown_kind_is_rejected() {
    let mut wire = encode_header(1, FrameKind::Request, 0).unwrap().to_vec();
    wire[12] = 0x7f;
    let mut input = &wire[..];
    let err = FrameDecoder::new(10).decode(&mut input).unwrap_err();
    assert_eq!(err.kind(), FrameErrorKind::UnknownKind);
    assert_eq!(err.kind_byte(), 0x7f);
    assert!(err.to_string().contains("0x7f"));
}

#[test]
fn a_stream_cut_inside_a_frame_is_truncated() {
    let wire = encode(&[Frame {
        id: 1,
        kind: FrameKind::Response,
        payload: vec![7; 50],
    }]);
    let mut decoder = FrameDecoder::new(100);
    let mut input = &wire[..30];
    assert_eq!(decoder.decode(&mut input).unwrap(), None);
    assert!(!decoder.is_idle());
    assert_eq!(decoder.buffered(), 30);
    let err = decoder.finish().unwrap_err();
    assert_eq!(err.kind(), FrameErrorKind::Truncated);
}

#[test]
fn a_large_declared_frame_allocates_only_what_arrived() {
    let max = 64 * 1024 * 1024;
    let mut decoder = FrameDecoder::new(max);
    let header = encode_header(1, FrameKind::Response, max).unwrap();
    let mut input = &header[..];
    assert_eq!(decoder.decode(&mut input).unwrap(), None);
    assert_eq!(decoder.allocated(), 0);
    let mut chunk: &[u8] = &[1; 1000];
    assert_eq!(decoder.decode(&mut chunk).unwrap(), None);
    assert!(decoder.allocated() < 64 * 1024, "{}", decoder.allocated());
}

#[test]
fn encoding_a_payload_over_u32_is_an_error() {
    let err = encode_header(1, FrameKind::Request, u32::MAX as usize + 1).unwrap_err();
    assert_eq!(err.kind(), FrameErrorKind::TooLarge);
    assert_eq!(HEADER_LEN, 13);
}

/// Decodes messages from `wire` fed in pieces of the given sizes (cycled).
fn decode_messages(decoder: &mut FrameDecoder, wire: &[u8], pieces: &[usize]) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut rest = wire;
    let mut sizes = pieces.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(size);
        rest = tail;
        let mut input = piece;
        while let Some(message) = decoder.decode_message(&mut input).unwrap() {
            messages.push(message);
        }
    }
    messages
}

#[test]
fn a_message_over_the_maximum_is_dropped_as_it_arrives_and_the_stream_goes_on() {
    let mut wire = Vec::new();
    encode_message(5, FrameKind::Response, &[9; 250], 64, &mut wire).unwrap();
    encode_message(6, FrameKind::Error, &[1; 80], 64, &mut wire).unwrap();
    let mut decoder = FrameDecoder::new(64).max_message_size(100);
    let mut most = 0;
    let mut messages = Vec::new();
    for byte in wire.chunks(1) {
        let mut input = byte;
        while let Some(message) = decoder.decode_message(&mut input).unwrap() {
            messages.push(message);
        }
        most = most.max(decoder.allocated());
    }
    assert_eq!(
        messages,
        [
            Message::TooLarge {
                id: 5,
                kind: FrameKind::Response,
                len: 250,
                max: 100
            },
            Message::Frame(Frame {
                id: 6,
                kind: FrameKind::Error,
                payload: vec![1; 80]
            }),
        ]
    );
    assert!(most <= 100, "kept {most} bytes");
    assert!(decoder.finish().is_ok());
}

#[test]
fn a_frame_of_another_id_inside_a_message_is_an_error() {
    let mut wire = encode_header(1, FrameKind::Part, 2).unwrap().to_vec();
    wire.extend_from_slice(b"ab");
    wire.extend_from_slice(&encode_header(2, FrameKind::Response, 0).unwrap());
    let mut input = &wire[..];
    let err = FrameDecoder::new(10)
        .decode_message(&mut input)
        .unwrap_err();
    assert_eq!(err.kind(), FrameErrorKind::Interleaved);
}

#[test]
fn a_stream_cut_inside_a_message_is_truncated() {
    let mut wire = Vec::new();
    encode_message(1, FrameKind::Response, &[3; 30], 10, &mut wire).unwrap();
    let mut decoder = FrameDecoder::new(10).max_message_size(1000);
    let mut input = &wire[..2 * (HEADER_LEN + 10)];
    assert_eq!(decoder.decode_message(&mut input).unwrap(), None);
    assert!(!decoder.is_idle());
    assert_eq!(
        decoder.finish().unwrap_err().kind(),
        FrameErrorKind::Truncated
    );
}

fn frame_strategy() -> impl Strategy<Value = Frame> {
    (
        any::<u64>(),
        prop_oneof![
            Just(FrameKind::Request),
            Just(FrameKind::Response),
            Just(FrameKind::Error),
            Just(FrameKind::Control),
        ],
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(id, kind, payload)| Frame { id, kind, payload })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Valid frames survive any split of the stream.
    #[test]
    fn valid_frames_decode_under_any_split(
        frames in proptest::collection::vec(frame_strategy(), 0..20),
        pieces in proptest::collection::vec(1usize..200, 1..10),
    ) {
        let wire = encode(&frames);
        let mut decoder = FrameDecoder::new(300);
        let decoded = decode_in_pieces(&mut decoder, &wire, &pieces).unwrap();
        prop_assert_eq!(decoded, frames);
        prop_assert!(decoder.finish().is_ok());
    }

    /// Arbitrary bytes give valid frames or an error: never a panic, never an
    /// allocation over the maximum frame size.
    #[test]
    fn arbitrary_bytes_never_panic_or_overallocate(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        pieces in proptest::collection::vec(1usize..512, 1..8),
        max in 0usize..2048,
    ) {
        let mut decoder = FrameDecoder::new(max);
        let mut rest = &bytes[..];
        let mut sizes = pieces.iter().cycle();
        'feed: while !rest.is_empty() {
            let size = (*sizes.next().unwrap()).min(rest.len());
            let (piece, tail) = rest.split_at(size);
            rest = tail;
            let mut input = piece;
            loop {
                prop_assert!(decoder.allocated() <= max);
                match decoder.decode(&mut input) {
                    Ok(Some(frame)) => {
                        prop_assert!(frame.payload.len() <= max);
                        prop_assert!(frame.payload.capacity() <= max);
                    }
                    Ok(None) => {
                        prop_assert!(input.is_empty());
                        break;
                    }
                    Err(err) => {
                        prop_assert!(matches!(
                            err.kind(),
                            FrameErrorKind::TooLarge | FrameErrorKind::UnknownKind
                        ));
                        break 'feed;
                    }
                }
            }
        }
        prop_assert!(decoder.allocated() <= max);
        let _ = decoder.finish();
    }

    /// Messages split into frames of any size join up again under any split
    /// of the stream, into buffers no larger than the message.
    #[test]
    fn messages_split_into_parts_decode_under_any_split(
        frames in proptest::collection::vec(frame_strategy(), 0..10),
        max_frame in 1usize..64,
        pieces in proptest::collection::vec(1usize..200, 1..10),
    ) {
        let mut wire = Vec::new();
        for frame in &frames {
            encode_message(frame.id, frame.kind, &frame.payload, max_frame, &mut wire).unwrap();
        }
        let mut decoder = FrameDecoder::new(max_frame).max_message_size(300);
        let decoded = decode_messages(&mut decoder, &wire, &pieces);
        let expected: Vec<Message> = frames.into_iter().map(Message::Frame).collect();
        prop_assert_eq!(decoded, expected);
        prop_assert!(decoder.finish().is_ok());
    }

    /// Valid frames followed by garbage: the valid ones come out first.
    #[test]
    fn garbage_after_valid_frames_does_not_lose_them(
        frames in proptest::collection::vec(frame_strategy(), 1..5),
        garbage in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let mut wire = encode(&frames);
        wire.extend_from_slice(&garbage);
        let mut decoder = FrameDecoder::new(300);
        let mut input = &wire[..];
        let mut decoded = Vec::new();
        while let Ok(Some(frame)) = decoder.decode(&mut input) {
            decoded.push(frame);
        }
        prop_assert!(decoded.len() >= frames.len());
        prop_assert_eq!(&decoded[..frames.len()], &frames[..]);
    }
}
