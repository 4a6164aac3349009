//! The Message List (ML): which gossip this peer has already seen (R9).
//!
//! Keyed by SHA-256 of the message text, so a message is recognised however
//! it arrives and whatever its hop count. Only the digest and a little
//! metadata are kept, not the text.

use std::{collections::HashMap, net::SocketAddr};

use sha2::{Digest, Sha256};

use crate::proto::Timestamp;

/// SHA-256 of a message text.
pub type MessageDigest = [u8; 32];

pub fn digest(msg: &str) -> MessageDigest {
    Sha256::digest(msg.as_bytes()).into()
}

/// What the ML remembers about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageMeta {
    /// The neighbour it first came from; `None` for our own messages.
    pub first_from: Option<SocketAddr>,
    pub first_seen: Timestamp,
}

#[derive(Debug, Default)]
pub struct MessageList {
    entries: HashMap<MessageDigest, MessageMeta>,
}

impl MessageList {
    /// Records `msg` and returns true if it was not seen before; a duplicate
    /// leaves the list as it was and returns false.
    pub fn record_first(&mut self, msg: &str, from: Option<SocketAddr>, now: Timestamp) -> bool {
        let mut fresh = false;
        self.entries.entry(digest(msg)).or_insert_with(|| {
            fresh = true;
            MessageMeta {
                first_from: from,
                first_seen: now,
            }
        });
        fresh
    }

    pub fn get(&self, msg: &str) -> Option<&MessageMeta> {
        self.entries.get(&digest(msg))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_new_only_once() {
        let mut ml = MessageList::default();
        let a = SocketAddr::from(([127, 0, 0, 1], 6001));
        let b = SocketAddr::from(([127, 0, 0, 1], 6002));
        assert!(ml.record_first("1.5:127.0.0.1:1", Some(a), Timestamp(10)));
        assert!(!ml.record_first("1.5:127.0.0.1:1", Some(b), Timestamp(20)));
        assert!(ml.record_first("1.5:127.0.0.1:2", Some(b), Timestamp(30)));
        assert_eq!(ml.len(), 2);
        let meta = ml.get("1.5:127.0.0.1:1").unwrap();
        assert_eq!(
            meta.first_from,
            Some(a),
            "a duplicate overwrote the first sender"
        );
        assert_eq!(meta.first_seen, Timestamp(10));
    }

    #[test]
    fn digest_is_sha256_of_the_text() {
        assert_eq!(
            hex::encode(digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
