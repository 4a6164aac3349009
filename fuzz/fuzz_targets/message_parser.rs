//! `Message::from_json` on arbitrary bytes. Never panics, and whatever it
//! accepts survives a round trip: `to_json` then `from_json` gives the same
//! message back, and so does a whole frame (`to_frame`) through the codec.
#![no_main]

use gossipnet::{net::conn::codec, proto::message::Message};
use libfuzzer_sys::fuzz_target;
use tokio_util::{bytes::BytesMut, codec::Decoder};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::from_json(data) else {
        return;
    };
    let json = msg.to_json();
    let back = Message::from_json(&json).unwrap_or_else(|e| {
        panic!(
            "{msg:?} encodes as {} which does not parse: {e}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(
        back,
        msg,
        "changed by a round trip through {}",
        String::from_utf8_lossy(&json)
    );

    let mut frame = BytesMut::from(&msg.to_frame()[..]);
    let body = codec().decode(&mut frame).expect("a frame of one message");
    assert_eq!(body.as_deref(), Some(&json[..]), "frame body");
    assert!(frame.is_empty(), "bytes left after the frame");
});
