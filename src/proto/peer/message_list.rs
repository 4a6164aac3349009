//! The Message List (ML): which gossip this peer has already seen (R9).
//!
//! Keyed by SHA-256 of the origin (its listen address and key) and the
//! message text, so a message is recognised however it arrives and whatever
//! its hop count. The origin's address is part of the key because the text
//! carries only the IP: two peers on one machine that link at the same
//! moment gossip in lockstep and do produce equal texts. Its key is part of
//! it so that a text signed by another key under a real origin's address,
//! seen first, cannot make the real message a duplicate. Only the digest,
//! when it was first seen and which link it came from are kept.
//!
//! The list must never deliver a message twice, and its memory must stay
//! bounded however many distinct messages arrive. Both hold by time, not by
//! a count an attacker could push entries out with:
//!
//! - Every text a peer creates starts with its creation time, `<Unix
//!   seconds>:`. A message is admitted only if that time lies within
//!   [`ML_RETENTION`] before `now` and [`MAX_FUTURE_SKEW`] after it. A text
//!   without one is refused (every peer writes one; docs/PROTOCOL.md).
//! - An entry is kept [`ML_RETENTION`] + [`MAX_FUTURE_SKEW`] after it was
//!   first seen, and never removed before. Since a message admitted at `t`
//!   was created no later than `t + MAX_FUTURE_SKEW`, every copy that
//!   arrives after its entry is gone is older than [`ML_RETENTION`], and so
//!   refused as stale: "expired" never comes before "stale".
//! - At [`ML_CAPACITY`] entries a new message is refused, not delivered and
//!   not forwarded; no entry is evicted. Refusing costs one delivery, while
//!   evicting could cost a double one.
//! - So that one flooding link cannot take the whole list, a link (the
//!   neighbour a message first came from) may hold at most
//!   [`ML_LINK_SHARE`] entries once the list is half full. Below half, any
//!   link may use the room, so a leaf whose one neighbour carries a large
//!   network's whole traffic is not held to a quarter. One flooding link can
//!   thus take at most half of the list, and every other link keeps room
//!   for its share.

use std::{
    collections::{HashSet, VecDeque},
    fmt::Write as _,
    net::SocketAddr,
    time::Duration,
};

use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use crate::proto::{evidence::PublicKey, Timestamp};

/// SHA-256 of a message text.
pub type MessageDigest = [u8; 32];

/// Who created a gossip message: the listen address it names, and the key
/// that signed it. Messages, and admission budgets, belong to the pair, so
/// a key that signs under another peer's address gets budgets and messages
/// of its own and never uses up or pre-empts the real peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GossipOrigin {
    pub addr: SocketAddr,
    pub key: PublicKey,
}

/// SHA-256 of `"<origin address> <origin key> <msg>"` in UTF-8, the key
/// as 64 lowercase hex digits, e.g. `"127.0.0.1:6001 0303…03 1.5:127.0.0.1:1"`.
pub fn digest(origin: GossipOrigin, msg: &str) -> MessageDigest {
    let mut hasher = Sha256::new();
    // Straight into the hash: every GOSSIP received is digested, and a
    // string for the address cost as much as the hash itself.
    write!(HashWriter(&mut hasher), "{} ", origin.addr).expect("hashing cannot fail");
    let mut key_hex = [0u8; 64];
    hex::encode_to_slice(origin.key.0, &mut key_hex).expect("64 digits for 32 bytes");
    hasher.update(key_hex);
    hasher.update(b" ");
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

/// Most entries the list holds. An entry costs about 85 bytes (48 in the
/// expiry queue, 32 in the digest table at 7/8 load, plus its control
/// byte), and a full table rounds up to 2^17 buckets: about 7.3 MiB at
/// most. That is room for 6,500 peers' worth of default gossip (10
/// messages each) in one retention window, and half of it, what one link
/// may use alone, for 3,200.
pub const ML_CAPACITY: usize = 65_536;
/// How long a message stays fresh after its creation time: older copies are
/// refused as stale. Ten minutes is far longer than a message takes to
/// cross any network, and lets a peer's clock lag the others' by as much.
pub const ML_RETENTION: Duration = Duration::from_secs(600);
/// How far ahead of `now` a creation time may be. 60 s lets peers whose
/// clocks are roughly right but not NTP-synced talk, while a message from
/// the far future, which would stay fresh for longer than its entry is kept,
/// is refused. Every entry is kept this much longer than [`ML_RETENTION`],
/// which is the price of the tolerance: 10 % more entries in the list at
/// a steady rate.
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(60);
/// Entries one link may hold once the list is half full: a quarter of it,
/// so a flooding link leaves room for others. 16,384 entries per 11 minutes
/// is more than a 1000-peer network creates by default (10,000 messages,
/// at most 200 a second), so honest links of such a network never meet it.
pub const ML_LINK_SHARE: usize = ML_CAPACITY / 4;

/// Why the list did not admit a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It is in the list already.
    Duplicate,
    /// Created more than [`ML_RETENTION`] ago: a replay, or a clock far
    /// behind.
    Stale,
    /// The text does not start with a creation time.
    Timeless,
    /// Created this far ahead of `now`, more than [`MAX_FUTURE_SKEW`].
    Future(Duration),
    /// The list holds its capacity in unexpired entries.
    Full,
    /// The link it came from holds its share and the list is half full.
    OverShare,
    /// Its origin, or its link's new origins, are over their admission
    /// budget (see [`super::admission`]).
    OverBudget(super::admission::OverBudget),
}

/// The creation time a text starts with (`<Unix seconds>:`, as every peer
/// writes it), if it starts with a readable, finite, non-negative one.
pub fn creation_time(msg: &str) -> Option<Timestamp> {
    let (secs, _) = msg.split_once(':')?;
    let secs = secs.parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(Timestamp((secs * 1e6) as u64))
}

/// Judges a text's creation time at `now`: fresh, or why not.
pub fn check_time(msg: &str, now: Timestamp) -> Result<(), Refusal> {
    let created = creation_time(msg).ok_or(Refusal::Timeless)?;
    if now.saturating_since(created) > ML_RETENTION {
        return Err(Refusal::Stale);
    }
    let ahead = created.saturating_since(now);
    if ahead > MAX_FUTURE_SKEW {
        return Err(Refusal::Future(ahead));
    }
    Ok(())
}

/// Index of a link in [`MessageList::links`].
type Slot = u32;

/// One entry in the expiry queue: 48 bytes (checked by a test).
#[derive(Debug, Clone, Copy)]
struct Queued {
    first_seen: Timestamp,
    digest: MessageDigest,
    owner: Slot,
}

/// A link that holds entries.
#[derive(Debug, Clone, Copy)]
struct Holder {
    /// The neighbour; `None` for this peer's own messages.
    link: Option<SocketAddr>,
    held: u32,
}

#[derive(Debug)]
pub struct MessageList {
    digests: HashSet<MessageDigest>,
    /// Entries in the order they were first seen, which is the order they
    /// expire in.
    order: VecDeque<Queued>,
    /// Links that hold entries, by slot; a slot whose `held` falls to zero
    /// is freed.
    links: Vec<Holder>,
    slot_of: FxHashMap<Option<SocketAddr>, Slot>,
    free: Vec<Slot>,
    capacity: usize,
    link_share: usize,
    /// How long an entry is kept after it was first seen.
    keep: Duration,
}

impl Default for MessageList {
    fn default() -> Self {
        MessageList::new(ML_CAPACITY)
    }
}

impl MessageList {
    /// A list of `capacity` entries, each link holding at most a quarter
    /// of it once it is half full.
    pub fn new(capacity: usize) -> MessageList {
        let capacity = capacity.max(1);
        MessageList {
            digests: HashSet::new(),
            order: VecDeque::new(),
            links: Vec::new(),
            slot_of: FxHashMap::default(),
            free: Vec::new(),
            capacity,
            link_share: (capacity / 4).max(1),
            keep: ML_RETENTION + MAX_FUTURE_SKEW,
        }
    }

    /// Forgets the entries whose time is up: every copy of them that could
    /// still come is stale.
    fn expire(&mut self, now: Timestamp) {
        while let Some(front) = self.order.front() {
            if now.saturating_since(front.first_seen) <= self.keep {
                break;
            }
            let Queued { digest, owner, .. } = *front;
            self.order.pop_front();
            self.digests.remove(&digest);
            let holder = &mut self.links[owner as usize];
            holder.held -= 1;
            if holder.held == 0 {
                self.slot_of.remove(&holder.link);
                self.free.push(owner);
            }
        }
    }

    /// Entries `link` holds.
    fn held_by(&self, link: Option<SocketAddr>) -> usize {
        self.slot_of
            .get(&link)
            .map_or(0, |&slot| self.links[slot as usize].held as usize)
    }

    fn slot(&mut self, link: Option<SocketAddr>) -> Slot {
        if let Some(&slot) = self.slot_of.get(&link) {
            return slot;
        }
        let holder = Holder { link, held: 0 };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.links[slot as usize] = holder;
                slot
            }
            None => {
                self.links.push(holder);
                (self.links.len() - 1) as Slot
            }
        };
        self.slot_of.insert(link, slot);
        slot
    }

    /// Records `msg`, first received from `from` (`None`: created here), if
    /// its creation time is fresh, it is new and there is room for it;
    /// otherwise says why not and leaves the list as it was.
    pub fn record_first(
        &mut self,
        origin: GossipOrigin,
        msg: &str,
        from: Option<SocketAddr>,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        self.record_first_if(origin, msg, from, now, || Ok(()))
    }

    /// As [`MessageList::record_first`], asking `admit` last, once the
    /// message is known to be new, fresh and to fit: so that only such
    /// messages are charged to a budget.
    pub fn record_first_if(
        &mut self,
        origin: GossipOrigin,
        msg: &str,
        from: Option<SocketAddr>,
        now: Timestamp,
        admit: impl FnOnce() -> Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        self.expire(now);
        check_time(msg, now)?;
        let key = digest(origin, msg);
        if self.digests.contains(&key) {
            return Err(Refusal::Duplicate);
        }
        let len = self.digests.len();
        if len >= self.capacity {
            return Err(Refusal::Full);
        }
        if len >= self.capacity / 2 && self.held_by(from) >= self.link_share {
            return Err(Refusal::OverShare);
        }
        admit()?;
        let owner = self.slot(from);
        self.links[owner as usize].held += 1;
        self.digests.insert(key);
        self.order.push_back(Queued {
            first_seen: now,
            digest: key,
            owner,
        });
        Ok(())
    }

    pub fn contains(&self, origin: GossipOrigin, msg: &str) -> bool {
        self.digests.contains(&digest(origin, msg))
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries one link may hold once the list is half full.
    pub fn link_share(&self) -> usize {
        self.link_share
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp(1_740_466_800_000_000);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The origin at `addr`, with a key of its own.
    fn o(addr: SocketAddr) -> GossipOrigin {
        GossipOrigin {
            addr,
            key: PublicKey([(addr.port() % 251) as u8; 32]),
        }
    }

    /// A text created at `at`, as a peer writes it.
    fn text(at: Timestamp, n: u64) -> String {
        format!("{:.6}:127.0.0.1:{n}", at.as_secs_f64())
    }

    #[test]
    fn a_message_is_new_only_once() {
        let mut ml = MessageList::default();
        let (a, b) = (addr(6001), addr(6002));
        assert_eq!(ml.record_first(o(a), &text(T0, 1), Some(a), T0), Ok(()));
        assert_eq!(
            ml.record_first(o(a), &text(T0, 1), Some(b), T0 + Duration::from_secs(1)),
            Err(Refusal::Duplicate)
        );
        assert_eq!(ml.record_first(o(a), &text(T0, 2), Some(b), T0), Ok(()));
        assert_eq!(ml.len(), 2);
        assert!(ml.contains(o(a), &text(T0, 1)));
    }

    #[test]
    fn an_entry_is_kept_until_every_copy_of_it_is_stale() {
        let mut ml = MessageList::new(10);
        let a = addr(6001);
        // Created as far ahead as allowed: fresh until T0 + skew + retention.
        let created = T0 + MAX_FUTURE_SKEW;
        let msg = text(created, 1);
        assert_eq!(ml.record_first(o(a), &msg, Some(a), T0), Ok(()));
        let last_fresh = created + ML_RETENTION;
        assert_eq!(
            ml.record_first(o(a), &msg, Some(a), last_fresh),
            Err(Refusal::Duplicate)
        );
        assert_eq!(ml.len(), 1);
        let next = Timestamp(last_fresh.as_micros() + 1);
        assert_eq!(
            ml.record_first(o(a), &msg, Some(a), next),
            Err(Refusal::Stale)
        );
        assert!(ml.is_empty(), "the entry outlived its message");
    }

    #[test]
    fn a_full_list_refuses_new_messages_and_never_evicts_an_unexpired_entry() {
        let mut ml = MessageList::new(100);
        // Four links, so that no one of them meets its share.
        for i in 0..10_000u64 {
            let from = addr(6001 + (i % 4) as u16);
            let result = ml.record_first(o(from), &text(T0, i), Some(from), T0);
            assert_eq!(result.is_ok(), i < 100, "message {i}: {result:?}");
            assert!(ml.len() <= 100);
            assert!(ml.order.len() <= 100);
        }
        // The first are kept: none of them is new again.
        for i in 0..100u64 {
            let from = addr(6001 + (i % 4) as u16);
            assert_eq!(
                ml.record_first(o(from), &text(T0, i), Some(from), T0),
                Err(Refusal::Duplicate)
            );
        }
        // Once they expire, there is room again, and their copies are stale.
        let later = T0 + ML_RETENTION + MAX_FUTURE_SKEW + Duration::from_micros(1);
        assert_eq!(
            ml.record_first(o(addr(6001)), &text(T0, 0), None, later),
            Err(Refusal::Stale)
        );
        assert!(ml.is_empty());
        assert_eq!(
            ml.record_first(o(addr(6001)), &text(later, 1), None, later),
            Ok(())
        );
        assert!(ml.links.len() <= 4 && ml.slot_of.len() == 1);
    }

    #[test]
    fn one_link_may_fill_half_the_list_then_only_its_share() {
        let mut ml = MessageList::new(100);
        let (flood, other) = (Some(addr(6001)), Some(addr(6002)));
        let mut admitted = 0;
        for i in 0..1_000u64 {
            if ml
                .record_first(o(addr(7000)), &text(T0, i), flood, T0)
                .is_ok()
            {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 50, "alone, a link may use half the list");
        for i in 0..1_000u64 {
            if ml
                .record_first(o(addr(7001)), &text(T0, i), other, T0)
                .is_ok()
            {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 75, "past half, another link gets its share");
        assert_eq!(
            ml.record_first(o(addr(7000)), &text(T0, 5_000), flood, T0),
            Err(Refusal::OverShare)
        );
        assert_eq!(
            ml.record_first(o(addr(7002)), &text(T0, 1), None, T0),
            Ok(())
        );
    }

    #[test]
    fn only_a_creation_time_within_the_window_is_fresh() {
        let secs = T0.as_secs_f64();
        let at = |offset: f64| format!("{:.6}:127.0.0.1:1", secs + offset);
        let retention = ML_RETENTION.as_secs_f64();
        let skew = MAX_FUTURE_SKEW.as_secs_f64();
        assert_eq!(check_time(&at(-5.0), T0), Ok(()));
        assert_eq!(check_time(&at(-retention), T0), Ok(()));
        assert_eq!(check_time(&at(skew), T0), Ok(()));
        assert_eq!(check_time(&at(-retention - 1.0), T0), Err(Refusal::Stale));
        assert!(matches!(
            check_time(&at(skew + 1.0), T0),
            Err(Refusal::Future(ahead)) if ahead.as_secs() == 61
        ));
        for timeless in ["hello", "nan:x", "-5:x", "inf:x", "", "1e400:x"] {
            assert_eq!(
                check_time(timeless, T0),
                Err(Refusal::Timeless),
                "{timeless}"
            );
        }
    }

    #[test]
    fn a_queued_entry_takes_48_bytes() {
        assert_eq!(std::mem::size_of::<Queued>(), 48);
    }

    #[test]
    fn equal_texts_from_different_origins_are_different_messages() {
        let mut ml = MessageList::default();
        let (a, b) = (addr(6001), addr(6002));
        assert_eq!(ml.record_first(o(a), &text(T0, 1), None, T0), Ok(()));
        assert_eq!(ml.record_first(o(b), &text(T0, 1), Some(b), T0), Ok(()));
    }

    #[test]
    fn a_text_signed_by_another_key_under_the_same_address_is_another_message() {
        let mut ml = MessageList::default();
        let real = o(addr(6001));
        let forger = GossipOrigin {
            key: PublicKey([9; 32]),
            ..real
        };
        let (via_forger, via_real) = (addr(7000), addr(6002));
        assert_eq!(
            ml.record_first(forger, &text(T0, 1), Some(via_forger), T0),
            Ok(())
        );
        assert_eq!(
            ml.record_first(real, &text(T0, 1), Some(via_real), T0),
            Ok(()),
            "a forger's copy, seen first, made the real message a duplicate"
        );
    }

    #[test]
    fn digest_is_sha256_of_address_key_and_text() {
        let origin = GossipOrigin {
            addr: addr(6001),
            key: PublicKey([0xab; 32]),
        };
        let key_hex = "ab".repeat(32);
        assert_eq!(
            hex::encode(digest(origin, "abc")),
            hex::encode(Sha256::digest(format!("127.0.0.1:6001 {key_hex} abc")))
        );
        let text_only: MessageDigest = Sha256::digest(b"abc").into();
        assert_ne!(digest(origin, "abc"), text_only);
        let v6 = GossipOrigin {
            addr: "[::1]:6001".parse().expect("an address"),
            ..origin
        };
        assert_eq!(
            hex::encode(digest(v6, "abc")),
            hex::encode(Sha256::digest(format!("[::1]:6001 {key_hex} abc")))
        );
    }
}
