//! The frame decoder, fed like a TCP stream: arbitrary bytes in arbitrary
//! chunks go through `net::conn::codec()`, and every frame body it yields goes
//! to `Message::from_json`.
//!
//! Input layout: byte 0 is a count `n`; the next `n` bytes are chunk lengths
//! (0 = call the decoder again with nothing new); the rest is the stream. The
//! stream is fed in chunks of those lengths, then whatever is left in one go.
//!
//! Besides "never panics", the decoder must agree with a plain reading of the
//! format: 4-byte big-endian length, then that many bytes; a length over
//! `MAX_FRAME_LEN` is an error as soon as its 4 bytes have arrived, before any
//! of the body; a frame cut short by the end of the stream never comes out.
#![no_main]

use gossipnet::{
    net::conn::codec,
    proto::message::{Message, MAX_FRAME_LEN},
};
use libfuzzer_sys::fuzz_target;
use tokio_util::{bytes::BytesMut, codec::Decoder};

/// How a stream must end, by the plain reading of the format.
#[derive(Debug, PartialEq)]
enum End {
    /// After a whole number of frames.
    Clean,
    /// Inside a header or a body.
    Partial,
    /// Just after a header whose body never came. tokio-util has consumed
    /// the header and holds no bytes, so it ends the stream quietly instead
    /// of reporting leftovers; either way no frame comes out.
    HeaderOnly,
    /// At a header announcing more than `MAX_FRAME_LEN` bytes.
    TooLong,
}

/// The frames in `stream` and how it ends.
fn expected(mut stream: &[u8]) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    loop {
        if stream.is_empty() {
            return (frames, End::Clean);
        }
        let Some((header, rest)) = stream.split_first_chunk::<4>() else {
            return (frames, End::Partial);
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len > MAX_FRAME_LEN {
            return (frames, End::TooLong);
        }
        if rest.is_empty() && len > 0 {
            return (frames, End::HeaderOnly);
        }
        if rest.len() < len {
            return (frames, End::Partial);
        }
        let (body, rest) = rest.split_at(len);
        frames.push(body);
        stream = rest;
    }
}

fuzz_target!(|data: &[u8]| {
    let (chunks, stream) = match data.split_first() {
        Some((&n, rest)) => rest.split_at(usize::from(n).min(rest.len())),
        None => (&[][..], &[][..]),
    };
    let (want, end) = expected(stream);

    let mut codec = codec();
    let mut buf = BytesMut::new();
    let mut got: Vec<BytesMut> = Vec::new();
    let mut fed = 0;
    let lengths = chunks.iter().map(|&l| usize::from(l)).chain([usize::MAX]);
    for len in lengths {
        let take = len.min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + take]);
        fed += take;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(
                        frame.len() <= MAX_FRAME_LEN,
                        "frame of {} bytes",
                        frame.len()
                    );
                    let _ = Message::from_json(&frame);
                    got.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    // Refused: the connection closes here. That must be a
                    // too-long header, seen as soon as its 4 bytes are in.
                    assert_eq!(end, End::TooLong, "unexpected error {e}");
                    assert_eq!(got, want, "frames before the refused header");
                    return;
                }
            }
        }
    }
    assert_ne!(end, End::TooLong, "a header over the limit was not refused");
    assert_eq!(got, want, "frames of the whole stream");
    // End of stream: what the connection sees when the remote closes.
    let last = codec.decode_eof(&mut buf);
    match end {
        End::Clean | End::HeaderOnly => {
            assert!(matches!(last, Ok(None)), "{last:?} at the end of {end:?}")
        }
        End::Partial => assert!(last.is_err(), "{last:?} with a partial frame left"),
        End::TooLong => unreachable!(),
    }
});
