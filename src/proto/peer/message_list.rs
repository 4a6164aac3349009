//! The Message List (ML): which gossip this peer has already seen (R9).
//!
//! Keyed by SHA-256 of the origin's listen address and the message text, so a
//! message is recognised however it arrives and whatever its hop count. The
//! origin is part of the key because the text carries only the IP: two peers
//! on one machine that link at the same moment gossip in lockstep and do
//! produce equal texts. Only the digest and a little metadata are kept.

use std::{collections::HashMap, net::SocketAddr};

use sha2::{Digest, Sha256};

use crate::proto::Timestamp;

/// SHA-256 of a message text.
pub type MessageDigest = [u8; 32];

/// SHA-256 of `"<origin> <msg>"` in UTF-8, e.g. `"127.0.0.1:6001 1.5:127.0.0.1:1"`.
pub fn digest(origin: SocketAddr, msg: &str) -> MessageDigest {
    let mut hasher = Sha256::new();
    hasher.update(origin.to_string().as_bytes());
    hasher.update(b" ");
    hasher.update(msg.as_bytes());
    hasher.finalize().into()
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
    pub fn record_first(
        &mut self,
        origin: SocketAddr,
        msg: &str,
        from: Option<SocketAddr>,
        now: Timestamp,
    ) -> bool {
        let mut fresh = false;
        self.entries.entry(digest(origin, msg)).or_insert_with(|| {
            fresh = true;
            MessageMeta {
                first_from: from,
                first_seen: now,
            }
        });
        fresh
    }

    pub fn get(&self, origin: SocketAddr, msg: &str) -> Option<&MessageMeta> {
        self.entries.get(&digest(origin, msg))
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
        assert!(ml.record_first(a, "1.5:127.0.0.1:1", Some(a), Timestamp(10)));
        assert!(!ml.record_first(a, "1.5:127.0.0.1:1", Some(b), Timestamp(20)));
        assert!(ml.record_first(a, "1.5:127.0.0.1:2", Some(b), Timestamp(30)));
        assert_eq!(ml.len(), 2);
        let meta = ml.get(a, "1.5:127.0.0.1:1").unwrap();
        assert_eq!(
            meta.first_from,
            Some(a),
            "a duplicate overwrote the first sender"
        );
        assert_eq!(meta.first_seen, Timestamp(10));
    }

    #[test]
    fn equal_texts_from_different_origins_are_different_messages() {
        let mut ml = MessageList::default();
        let a = SocketAddr::from(([127, 0, 0, 1], 6001));
        let b = SocketAddr::from(([127, 0, 0, 1], 6002));
        assert!(ml.record_first(a, "1.5:127.0.0.1:1", None, Timestamp(1)));
        assert!(ml.record_first(b, "1.5:127.0.0.1:1", Some(b), Timestamp(1)));
    }

    #[test]
    fn digest_is_sha256_of_origin_space_text() {
        let origin = SocketAddr::from(([127, 0, 0, 1], 6001));
        // sha256sum of the 19 bytes "127.0.0.1:6001 abc"
        assert_eq!(
            hex::encode(digest(origin, "abc")),
            hex::encode(Sha256::digest(b"127.0.0.1:6001 abc"))
        );
        let text_only: MessageDigest = Sha256::digest(b"abc").into();
        assert_ne!(digest(origin, "abc"), text_only);
    }
}
