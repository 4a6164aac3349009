//! Signed evidence of a peer's death (issue 8).
//!
//! Every peer has an ed25519 identity. The seeds commit each peer's public
//! key with its registration, so every seed knows the key of each
//! registered life. A neighbour that finds a suspect unresponsive signs a
//! *statement* saying so: who it is, whom it found unresponsive, at which
//! incarnation, and when. The reporter gathers the statements of the
//! majority it needs into its DEAD_REPORT, adds its own, and signs the
//! whole report. A seed counts a confirmer only if that confirmer's
//! statement verifies against the key committed for it. So no peer, and no
//! seed that relays a report, can name a confirmer that did not confirm.
//!
//! Signatures cover canonical byte strings ([`statement_bytes`],
//! [`report_bytes`]), never JSON, whose field order and spacing a sender
//! may vary. Each string starts with a domain tag, so that a signature made
//! for one purpose can never pass for another. Strings are length-prefixed,
//! so that no two different messages encode the same bytes.
//!
//! Nothing here reads a clock or draws randomness: an [`Identity`] is made
//! from 32 bytes its owner drew (the node from the OS, the simulator from
//! its seeded generator), and times are passed in. Ed25519 signing is
//! deterministic, so the simulator stays reproducible.

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::time::Timestamp;

/// How far a statement's time may lie from the checking seed's clock,
/// either way, for the statement to count. Statements are made within one
/// round of questions (one ping timeout plus 1 s, 7.5 s by default) before
/// the report, so the window is mostly room for clocks that disagree
/// across machines; 10 minutes also covers a ping interval of up to 18
/// minutes. Older evidence of the same life is stale: the suspect may have
/// answered since.
pub const STATEMENT_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Domain tag of a confirmer's statement.
const STATEMENT_TAG: &str = "gossipnet unresponsive v1";
/// Domain tag of a whole DEAD_REPORT.
const REPORT_TAG: &str = "gossipnet dead report v1";
/// Domain tag of a HELLO_PROOF.
const HELLO_TAG: &str = "gossipnet hello v1";
/// Domain tag of a GOSSIP message's origin signature.
const GOSSIP_TAG: &str = "gossipnet gossip v1";
/// Domain tag of the acceptor's HELLO_PROOF, over the dialler's challenge.
const ACCEPT_TAG: &str = "gossipnet hello accept v1";
/// Domain tag of an operator's order to replace a seed's pinned key.
const REKEY_TAG: &str = "gossipnet rekey v1";
/// Domain tag of a LEAVE: a peer's word that its life ends.
const LEAVE_TAG: &str = "gossipnet leave v1";
/// Domain tag of an operator's order to change the seeds.
const SEEDS_TAG: &str = "gossipnet seeds v1";

/// An ed25519 public key: 32 bytes, as 64 lowercase hex digits on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature: 64 bytes, as 128 lowercase hex digits on the wire.
/// Behind a shared pointer, so that the messages that carry one stay small,
/// and forwarding a GOSSIP to every neighbour copies no signature bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature(Arc<[u8; 64]>);

impl Signature {
    pub fn from_bytes(bytes: [u8; 64]) -> Signature {
        Signature(Arc::new(bytes))
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        *self.0
    }
}

/// A confirmer's signed word that it found the suspect unresponsive. The
/// suspect and its incarnation are those of the message that carries it
/// (SUSPECT_RESPONSE or DEAD_REPORT); the signature covers them too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// The confirmer: the listen address of the peer that signed.
    pub addr: SocketAddr,
    /// When it signed, in Unix microseconds by its own clock.
    pub at: u64,
    /// Its signature over [`statement_bytes`].
    pub signature: Signature,
}

/// A peer's signing key. Cloning shares the key.
#[derive(Clone)]
pub struct Identity {
    key: Arc<SigningKey>,
    public: PublicKey,
}

impl Identity {
    /// The identity whose secret is `secret` (an ed25519 seed): 32 random
    /// bytes make a new one.
    pub fn from_secret(secret: [u8; 32]) -> Identity {
        let key = SigningKey::from_bytes(&secret);
        let public = PublicKey(key.verifying_key().to_bytes());
        Identity {
            key: Arc::new(key),
            public,
        }
    }

    /// The secret, to store.
    pub fn secret(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    fn sign(&self, bytes: &[u8]) -> Signature {
        Signature::from_bytes(self.key.sign(bytes).to_bytes())
    }

    /// This peer's statement, as `me`, that it found `suspect` at
    /// `incarnation` unresponsive at `now`.
    pub fn state_unresponsive(
        &self,
        me: SocketAddr,
        suspect: SocketAddr,
        incarnation: u64,
        now: Timestamp,
    ) -> Statement {
        let at = now.as_micros();
        Statement {
            addr: me,
            at,
            signature: self.sign(&statement_bytes(suspect, incarnation, me, at)),
        }
    }

    /// This peer's signature, as reporter, over a whole DEAD_REPORT.
    pub fn sign_report(&self, report: &ReportContent<'_>) -> Signature {
        self.sign(&report_bytes(report))
    }

    /// This node's proof, as `me`, on a connection it dialled to
    /// `acceptor`, that it holds this key: its signature over the
    /// acceptor's `challenge`.
    pub fn prove_hello(&self, me: SocketAddr, acceptor: SocketAddr, challenge: u64) -> Signature {
        self.sign(&hello_bytes(me, acceptor, challenge))
    }

    /// This peer's signature, as origin `me`, over a gossip message it
    /// creates.
    pub fn sign_gossip(&self, me: SocketAddr, msg: &str) -> Signature {
        self.sign(&gossip_bytes(me, msg))
    }

    /// This node's proof, as `me`, on a connection `dialler` opened and
    /// proved, that it holds this key: its signature over the dialler's
    /// `challenge`.
    pub fn prove_accept(&self, me: SocketAddr, dialler: SocketAddr, challenge: u64) -> Signature {
        self.sign(&accept_bytes(me, dialler, challenge))
    }

    /// An operator's order to the seed at `voter`, signed with that seed's
    /// own key, to vote for replacing `seed`'s pinned key `old` with `new`.
    pub fn order_rekey(
        &self,
        voter: SocketAddr,
        seed: SocketAddr,
        old: PublicKey,
        new: PublicKey,
    ) -> Signature {
        self.sign(&rekey_bytes(voter, seed, old, new))
    }

    /// This peer's LEAVE, as `me`: its signed word that its life
    /// `incarnation` ends, so that the seeds remove it at once.
    pub fn sign_leave(&self, me: SocketAddr, incarnation: u64) -> Signature {
        self.sign(&leave_bytes(me, incarnation))
    }

    /// Signs an operator's order to the seed at `voter`, whose key this
    /// is, to vote for adding `add` and removing `remove` (SEEDS_REQUEST).
    pub fn order_seed_change(
        &self,
        voter: SocketAddr,
        add: Option<SocketAddr>,
        remove: Option<SocketAddr>,
    ) -> Signature {
        self.sign(&seed_change_bytes(voter, add, remove))
    }
}

/// Never shows the secret.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({:?})", self.public)
    }
}

/// Gossip signatures that verified, remembered for the peers that share
/// this memo. The simulator's peers all run in one process and share one,
/// so that a message is verified once rather than once by each of up to a
/// million peers (some 40 µs each). Verifying is a pure function of the
/// key, origin, text and signature, and the memo is keyed by all four, so
/// sharing it changes no outcome. A node's peer has none.
#[derive(Debug, Clone, Default)]
pub struct VerifiedGossip(Arc<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>>);

impl VerifiedGossip {
    /// As [`PublicKey::verify_gossip`], answered from the memo when this
    /// exact message was verified before.
    pub fn verify(
        &self,
        key: &PublicKey,
        origin: SocketAddr,
        msg: &str,
        signature: &Signature,
    ) -> Result<(), EvidenceError> {
        use sha2::{Digest, Sha256};
        let bytes = gossip_bytes(origin, msg);
        let mut hasher = Sha256::new();
        hasher.update(key.0);
        hasher.update(*signature.0);
        hasher.update(&bytes);
        let seen: [u8; 32] = hasher.finalize().into();
        let mut memo = self.0.lock().expect("no panic holds the memo");
        if memo.contains(&seen) {
            return Ok(());
        }
        key.verify(&bytes, signature)?;
        memo.insert(seen);
        Ok(())
    }
}

/// Why a signature does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// The key committed for the signer is not a valid ed25519 key.
    #[error("its registered key is not an ed25519 public key")]
    BadKey,
    /// The signature was not made by that key over these bytes.
    #[error("the signature does not verify against its registered key")]
    BadSignature,
}

impl PublicKey {
    /// Whether these bytes are a usable ed25519 public key (a point on the
    /// curve, and not one of small order).
    pub fn is_valid(&self) -> bool {
        VerifyingKey::from_bytes(&self.0).is_ok_and(|k| !k.is_weak())
    }

    /// Checks `signature` over `bytes`, strictly: no malleable or
    /// small-order forms.
    pub fn verify(&self, bytes: &[u8], signature: &Signature) -> Result<(), EvidenceError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| EvidenceError::BadKey)?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(bytes, &signature)
            .map_err(|_| EvidenceError::BadSignature)
    }

    /// Checks a HELLO_PROOF: this key signed `challenge` for a connection
    /// from `dialler` to `acceptor`.
    pub fn verify_hello(
        &self,
        dialler: SocketAddr,
        acceptor: SocketAddr,
        challenge: u64,
        signature: &Signature,
    ) -> Result<(), EvidenceError> {
        self.verify(&hello_bytes(dialler, acceptor, challenge), signature)
    }

    /// Checks a GOSSIP's signature: this key signed `msg` as created by
    /// `origin`.
    pub fn verify_gossip(
        &self,
        origin: SocketAddr,
        msg: &str,
        signature: &Signature,
    ) -> Result<(), EvidenceError> {
        self.verify(&gossip_bytes(origin, msg), signature)
    }

    /// Checks an acceptor's HELLO_PROOF: this key signed the dialler's
    /// `challenge` as the node at `acceptor`, for `dialler`.
    pub fn verify_accept(
        &self,
        acceptor: SocketAddr,
        dialler: SocketAddr,
        challenge: u64,
        signature: &Signature,
    ) -> Result<(), EvidenceError> {
        self.verify(&accept_bytes(acceptor, dialler, challenge), signature)
    }

    /// Checks a REKEY_REQUEST: this key (the seed at `voter`'s own)
    /// ordered it to vote for replacing `seed`'s key `old` with `new`.
    pub fn verify_rekey(
        &self,
        voter: SocketAddr,
        seed: SocketAddr,
        old: PublicKey,
        new: PublicKey,
        signature: &Signature,
    ) -> Result<(), EvidenceError> {
        self.verify(&rekey_bytes(voter, seed, old, new), signature)
    }

    /// Checks a LEAVE: this key signed the end of `peer`'s life
    /// `incarnation`.
    pub fn verify_leave(
        &self,
        peer: SocketAddr,
        incarnation: u64,
        signature: &Signature,
    ) -> Result<(), EvidenceError> {
        self.verify(&leave_bytes(peer, incarnation), signature)
    }

    /// Checks that `signature` is this key's order to the seed at `voter`
    /// to vote for adding `add` and removing `remove`.
    pub fn verify_seed_change(
        &self,
        voter: SocketAddr,
        add: Option<SocketAddr>,
        remove: Option<SocketAddr>,
        signature: &Signature,
    ) -> Result<(), EvidenceError> {
        self.verify(&seed_change_bytes(voter, add, remove), signature)
    }

    /// Checks that `statement` is this key's word that `suspect` at
    /// `incarnation` was unresponsive.
    pub fn verify_statement(
        &self,
        suspect: SocketAddr,
        incarnation: u64,
        statement: &Statement,
    ) -> Result<(), EvidenceError> {
        let bytes = statement_bytes(suspect, incarnation, statement.addr, statement.at);
        self.verify(&bytes, &statement.signature)
    }
}

/// Everything a reporter signs in its DEAD_REPORT: the message's fields,
/// and the reporter's own address, so that the report cannot be passed off
/// as another peer's.
#[derive(Debug, Clone, Copy)]
pub struct ReportContent<'a> {
    pub reporter: SocketAddr,
    pub report: &'a str,
    pub peer: SocketAddr,
    pub incarnation: u64,
    pub confirmers: &'a [Statement],
    pub unreachable: &'a [SocketAddr],
}

/// Canonical bytes: a domain tag, then each field, strings and addresses
/// as a 4-byte big-endian length and their UTF-8 text (`ip:port`, IPv6 in
/// brackets), numbers as 8 bytes big-endian.
struct Canonical(Vec<u8>);

impl Canonical {
    fn new(tag: &str) -> Canonical {
        let mut c = Canonical(Vec::with_capacity(128));
        c.text(tag);
        c
    }

    fn text(&mut self, text: &str) -> &mut Self {
        self.count(text.len());
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    fn addr(&mut self, addr: SocketAddr) -> &mut Self {
        self.text(&addr.to_string())
    }

    fn number(&mut self, n: u64) -> &mut Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    fn count(&mut self, n: usize) -> &mut Self {
        self.0.extend_from_slice(&(n as u32).to_be_bytes());
        self
    }
}

/// What a dialler signs in its HELLO_PROOF: tag `gossipnet hello v1`, its
/// own listen address, the acceptor's, and the acceptor's challenge. The
/// challenge is fresh on every connection, so a proof recorded on one
/// cannot be replayed on another; the addresses keep a proof made for one
/// acceptor from passing at another.
pub fn hello_bytes(dialler: SocketAddr, acceptor: SocketAddr, challenge: u64) -> Vec<u8> {
    let mut c = Canonical::new(HELLO_TAG);
    c.addr(dialler).addr(acceptor).number(challenge);
    c.0
}

/// What an origin signs for each gossip message it creates: tag
/// `gossipnet gossip v1`, its listen address and the message text. The
/// hop count is left out: forwarders change it.
pub fn gossip_bytes(origin: SocketAddr, msg: &str) -> Vec<u8> {
    let mut c = Canonical::new(GOSSIP_TAG);
    c.addr(origin).text(msg);
    c.0
}

/// What an acceptor signs in its HELLO_PROOF: tag `gossipnet hello accept
/// v1`, its own listen address, the dialler's (proved by then), and the
/// challenge of the dialler's HELLO. Another tag than the dialler's proof,
/// so that neither can pass for the other.
pub fn accept_bytes(acceptor: SocketAddr, dialler: SocketAddr, challenge: u64) -> Vec<u8> {
    let mut c = Canonical::new(ACCEPT_TAG);
    c.addr(acceptor).addr(dialler).number(challenge);
    c.0
}

/// What an operator signs, with the key of the seed at `voter`, to have
/// that seed vote for replacing `seed`'s pinned key: tag `gossipnet rekey
/// v1`, `voter`, `seed`, then the 32 bytes of the old key and of the new.
/// Naming the old key keeps a recorded order from counting once the key
/// it replaced has changed again.
pub fn rekey_bytes(voter: SocketAddr, seed: SocketAddr, old: PublicKey, new: PublicKey) -> Vec<u8> {
    let mut c = Canonical::new(REKEY_TAG);
    c.addr(voter).addr(seed);
    c.0.extend_from_slice(&old.0);
    c.0.extend_from_slice(&new.0);
    c.0
}

/// What a leaving peer signs: tag `gossipnet leave v1`, its listen
/// address and its incarnation. A life ends once, so the incarnation is
/// all the freshness a LEAVE needs: replayed, it can only end the life
/// that signed it, which has ended; a later life at the address has a
/// higher incarnation, which the signature does not cover.
pub fn leave_bytes(peer: SocketAddr, incarnation: u64) -> Vec<u8> {
    let mut c = Canonical::new(LEAVE_TAG);
    c.addr(peer).number(incarnation);
    c.0
}

/// What an operator signs, with the key of the seed at `voter`, to have
/// that seed vote for a seed change: tag `gossipnet seeds v1`, `voter`,
/// then `add` and `remove`, each the empty string when absent.
pub fn seed_change_bytes(
    voter: SocketAddr,
    add: Option<SocketAddr>,
    remove: Option<SocketAddr>,
) -> Vec<u8> {
    let mut c = Canonical::new(SEEDS_TAG);
    c.addr(voter);
    for side in [add, remove] {
        c.text(&side.map(|a| a.to_string()).unwrap_or_default());
    }
    c.0
}

/// What a confirmer signs: tag `gossipnet unresponsive v1`, the suspect,
/// its incarnation, the confirmer, the time.
pub fn statement_bytes(
    suspect: SocketAddr,
    incarnation: u64,
    confirmer: SocketAddr,
    at: u64,
) -> Vec<u8> {
    let mut c = Canonical::new(STATEMENT_TAG);
    c.addr(suspect)
        .number(incarnation)
        .addr(confirmer)
        .number(at);
    c.0
}

/// What a reporter signs: tag `gossipnet dead report v1`, the reporter,
/// the report text, the suspect, its incarnation, the number of
/// statements and each one (confirmer, time, the 64 signature bytes), the
/// number of unreachable neighbours and each address.
pub fn report_bytes(r: &ReportContent<'_>) -> Vec<u8> {
    let mut c = Canonical::new(REPORT_TAG);
    c.addr(r.reporter)
        .text(r.report)
        .addr(r.peer)
        .number(r.incarnation)
        .count(r.confirmers.len());
    for s in r.confirmers {
        c.addr(s.addr).number(s.at);
        c.0.extend_from_slice(&s.signature.0[..]);
    }
    c.count(r.unreachable.len());
    for u in r.unreachable {
        c.addr(*u);
    }
    c.0
}

/// Whether a statement made at `at` is within [`STATEMENT_WINDOW`] of
/// `now`; if not, how far off it is, in whole seconds, and in which
/// direction.
pub fn freshness(at: u64, now: Timestamp) -> Result<(), String> {
    let now = now.as_micros();
    let window = STATEMENT_WINDOW.as_micros() as u64;
    if at.saturating_add(window) < now {
        Err(format!(
            "its statement is {} s old; at most {} s count",
            (now - at) / 1_000_000,
            STATEMENT_WINDOW.as_secs()
        ))
    } else if now.saturating_add(window) < at {
        Err(format!(
            "its statement is dated {} s ahead of this seed's clock; at most {} s count",
            (at - now) / 1_000_000,
            STATEMENT_WINDOW.as_secs()
        ))
    } else {
        Ok(())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(&self.0[..]))
    }
}

/// Decodes exactly `N` bytes of hex.
fn from_hex<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    hex::decode_to_slice(text, &mut bytes)
        .map_err(|e| format!("expected {} hex digits: {e}", 2 * N))?;
    Ok(bytes)
}

impl std::str::FromStr for PublicKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        from_hex(text).map(PublicKey)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        from_hex(&text).map(PublicKey).map_err(de::Error::custom)
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0[..]))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        from_hex(&text)
            .map(Signature::from_bytes)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn now() -> Timestamp {
        Timestamp(1_795_277_301_246_118)
    }

    #[test]
    fn a_statement_verifies_only_for_what_it_binds() {
        let id = Identity::from_secret([7; 32]);
        let key = id.public_key();
        let s = id.state_unresponsive(a(6002), a(6001), 9, now());
        assert_eq!((s.addr, s.at), (a(6002), now().as_micros()));
        assert_eq!(key.verify_statement(a(6001), 9, &s), Ok(()));
        let bad = Err(EvidenceError::BadSignature);
        assert_eq!(key.verify_statement(a(6003), 9, &s), bad, "other suspect");
        assert_eq!(key.verify_statement(a(6001), 8, &s), bad, "older life");
        let moved = Statement {
            addr: a(6004),
            ..s.clone()
        };
        assert_eq!(
            key.verify_statement(a(6001), 9, &moved),
            bad,
            "other signer"
        );
        let later = Statement {
            at: s.at + 1,
            ..s.clone()
        };
        assert_eq!(key.verify_statement(a(6001), 9, &later), bad, "other time");
        let other = Identity::from_secret([8; 32]).public_key();
        assert_eq!(other.verify_statement(a(6001), 9, &s), bad, "other key");
    }

    #[test]
    fn a_report_signature_covers_every_field() {
        let id = Identity::from_secret([7; 32]);
        let statements = [id.state_unresponsive(a(6002), a(6001), 9, now())];
        let content = ReportContent {
            reporter: a(6002),
            report: "Dead Node:127.0.0.1:6001:1795277301.246118:127.0.0.1",
            peer: a(6001),
            incarnation: 9,
            confirmers: &statements,
            unreachable: &[a(6003)],
        };
        let sig = id.sign_report(&content);
        let key = id.public_key();
        assert_eq!(key.verify(&report_bytes(&content), &sig), Ok(()));
        let changed = [
            ReportContent {
                reporter: a(6004),
                ..content
            },
            ReportContent {
                report: "Dead Node:127.0.0.1:6001:1795277301.246119:127.0.0.1",
                ..content
            },
            ReportContent {
                incarnation: 10,
                ..content
            },
            ReportContent {
                confirmers: &[],
                ..content
            },
            ReportContent {
                unreachable: &[],
                ..content
            },
        ];
        for c in changed {
            assert!(key.verify(&report_bytes(&c), &sig).is_err(), "{c:?}");
        }
    }

    #[test]
    fn a_leave_verifies_only_for_its_peer_life_and_key() {
        let id = Identity::from_secret([7; 32]);
        let sig = id.sign_leave(a(6001), 9);
        let key = id.public_key();
        assert_eq!(key.verify_leave(a(6001), 9, &sig), Ok(()));
        let bad = Err(EvidenceError::BadSignature);
        assert_eq!(key.verify_leave(a(6002), 9, &sig), bad, "other peer");
        assert_eq!(key.verify_leave(a(6001), 10, &sig), bad, "other life");
        let other = Identity::from_secret([8; 32]).public_key();
        assert_eq!(other.verify_leave(a(6001), 9, &sig), bad, "other key");
        // Not a gossip signature over the same fields, nor the reverse.
        let gossip = id.sign_gossip(a(6001), "9");
        assert_eq!(key.verify_leave(a(6001), 9, &gossip), bad, "other tag");
    }

    #[test]
    fn keys_and_signatures_travel_as_hex() {
        let id = Identity::from_secret([1; 32]);
        let key = id.public_key();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json.len(), 66);
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<PublicKey>("\"abcd\"").is_err());
        assert!(
            serde_json::from_str::<Signature>(&json).is_err(),
            "too short"
        );
        assert!(key.is_valid());
        let mut neutral = [0; 32];
        neutral[0] = 1;
        assert!(!PublicKey(neutral).is_valid(), "a small-order point");
        assert_eq!(
            Identity::from_secret(id.secret()).public_key(),
            key,
            "the secret alone rebuilds the identity"
        );
        assert!(!format!("{id:?}").contains(&hex::encode(id.secret())));
    }

    #[test]
    fn freshness_allows_the_window_either_way() {
        let w = STATEMENT_WINDOW.as_micros() as u64;
        let t = now().as_micros();
        assert!(freshness(t, now()).is_ok());
        assert!(freshness(t - w, now()).is_ok());
        assert!(freshness(t + w, now()).is_ok());
        assert!(freshness(t - w - 1, now()).unwrap_err().contains("old"));
        assert!(freshness(t + w + 1, now()).unwrap_err().contains("ahead"));
    }
}
