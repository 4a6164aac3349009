//! The Message List (ML): which gossip this peer has already seen (R9).
//!
//! Keyed by SHA-256 of the origin's listen address and the message text, so a
//! message is recognised however it arrives and whatever its hop count. The
//! origin is part of the key because the text carries only the IP: two peers
//! on one machine that link at the same moment gossip in lockstep and do
//! produce equal texts. Only the digest and a little metadata are kept.
//!
//! The list is bounded, so that a flood of distinct messages cannot grow a
//! peer's memory without limit: an entry expires [`ML_RETENTION`] after it
//! was first seen, and past [`ML_CAPACITY`] entries the oldest goes first.
//! A message is done spreading within seconds, so forgetting it later does
//! not let it loop; a replay of it after it expired is refused by its age
//! instead (see [`is_stale`]).

use std::{
    collections::{HashMap, VecDeque},
    fmt::Write as _,
    net::SocketAddr,
    time::Duration,
};

use sha2::{Digest, Sha256};

use crate::proto::Timestamp;

/// SHA-256 of a message text.
pub type MessageDigest = [u8; 32];

/// SHA-256 of `"<origin> <msg>"` in UTF-8, e.g. `"127.0.0.1:6001 1.5:127.0.0.1:1"`.
pub fn digest(origin: SocketAddr, msg: &str) -> MessageDigest {
    let mut hasher = Sha256::new();
    // Straight into the hash: every GOSSIP received is digested, and a
    // string for the address cost as much as the hash itself.
    write!(HashWriter(&mut hasher), "{origin} ").expect("hashing cannot fail");
    hasher.update(msg.as_bytes());
    hasher.finalize().into()
}

/// Feeds formatted text to a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.update(text.as_bytes());
        Ok(())
    }
}

/// What the ML remembers about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageMeta {
    /// The neighbour it first came from; `None` for our own messages.
    pub first_from: Option<SocketAddr>,
    pub first_seen: Timestamp,
}

/// Most entries the list holds: about 5 MiB at most (digest, metadata and
/// the expiry queue, about 80 bytes an entry).
pub const ML_CAPACITY: usize = 65_536;
/// How long an entry is kept after the message was first seen.
pub const ML_RETENTION: Duration = Duration::from_secs(600);

/// True when `msg` starts with a creation time (`<Unix seconds>:`, as every
/// peer writes it) older than [`ML_RETENTION`] at `now`. Such a message may
/// have left the list already, so it is refused rather than delivered twice.
/// A text without a readable time is judged by the list alone.
pub fn is_stale(msg: &str, now: Timestamp) -> bool {
    let Some(created) = msg
        .split_once(':')
        .and_then(|(secs, _)| secs.parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
    else {
        return false;
    };
    let created = Timestamp((created * 1e6) as u64);
    now.saturating_since(created) > ML_RETENTION
}

#[derive(Debug)]
pub struct MessageList {
    entries: HashMap<MessageDigest, MessageMeta>,
    /// Digests in the order they were first seen, for expiry and eviction.
    order: VecDeque<(Timestamp, MessageDigest)>,
    capacity: usize,
    retention: Duration,
    /// Entries dropped for room before they expired.
    evicted: u64,
}

impl Default for MessageList {
    fn default() -> Self {
        MessageList::new(ML_CAPACITY, ML_RETENTION)
    }
}

impl MessageList {
    pub fn new(capacity: usize, retention: Duration) -> MessageList {
        MessageList {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            retention,
            evicted: 0,
        }
    }

    /// Forgets entries older than the retention time.
    fn expire(&mut self, now: Timestamp) {
        while let Some(&(seen, digest)) = self.order.front() {
            if now.saturating_since(seen) < self.retention {
                break;
            }
            self.order.pop_front();
            self.entries.remove(&digest);
        }
    }

    /// Records `msg` and returns true if it was not seen before; a duplicate
    /// leaves the list as it was and returns false.
    pub fn record_first(
        &mut self,
        origin: SocketAddr,
        msg: &str,
        from: Option<SocketAddr>,
        now: Timestamp,
    ) -> bool {
        self.expire(now);
        let key = digest(origin, msg);
        if self.entries.contains_key(&key) {
            return false;
        }
        if self.entries.len() >= self.capacity {
            if let Some((_, oldest)) = self.order.pop_front() {
                self.entries.remove(&oldest);
                self.evicted += 1;
            }
        }
        self.entries.insert(
            key,
            MessageMeta {
                first_from: from,
                first_seen: now,
            },
        );
        self.order.push_back((now, key));
        true
    }

    /// Entries dropped for room before their retention time was up.
    pub fn evicted(&self) -> u64 {
        self.evicted
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
    fn entries_expire_after_the_retention_time() {
        let mut ml = MessageList::new(10, Duration::from_secs(60));
        let a = SocketAddr::from(([127, 0, 0, 1], 6001));
        assert!(ml.record_first(a, "x", None, Timestamp(0)));
        assert!(!ml.record_first(a, "x", None, Timestamp(59_000_000)));
        assert!(ml.record_first(a, "y", None, Timestamp(59_000_000)));
        // "x" is 60 s old now and goes; "y" stays.
        assert!(!ml.record_first(a, "y", None, Timestamp(60_000_000)));
        assert_eq!(ml.len(), 1);
        assert!(ml.get(a, "x").is_none());
        assert_eq!(ml.evicted(), 0);
    }

    #[test]
    fn a_flood_of_distinct_messages_never_grows_the_list_past_its_capacity() {
        let mut ml = MessageList::new(100, Duration::from_secs(600));
        let a = SocketAddr::from(([127, 0, 0, 1], 6001));
        for i in 0..10_000u64 {
            assert!(ml.record_first(a, &i.to_string(), None, Timestamp(i)));
            assert!(ml.len() <= 100);
            assert!(ml.order.len() <= 100);
        }
        assert_eq!(ml.evicted(), 10_000 - 100);
        // The newest are kept, the oldest went first.
        assert!(ml.get(a, "9999").is_some());
        assert!(ml.get(a, "9899").is_none());
        assert!(!ml.record_first(a, "9950", None, Timestamp(10_000)));
    }

    #[test]
    fn a_message_older_than_the_retention_time_is_stale() {
        let now = Timestamp(1_740_466_800_000_000);
        let secs = now.as_secs_f64();
        let fresh = format!("{:.6}:127.0.0.1:1", secs - 5.0);
        let old = format!("{:.6}:127.0.0.1:1", secs - ML_RETENTION.as_secs_f64() - 1.0);
        assert!(!is_stale(&fresh, now));
        assert!(is_stale(&old, now));
        for free_text in ["hello", "nan:x", "-5:x", "inf:x", ""] {
            assert!(!is_stale(free_text, now), "{free_text}");
        }
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
        let v6: SocketAddr = "[::1]:6001".parse().expect("an address");
        assert_eq!(
            hex::encode(digest(v6, "abc")),
            hex::encode(Sha256::digest(b"[::1]:6001 abc"))
        );
    }
}
