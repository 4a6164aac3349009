//! Gossip admission by origin: how many new messages each origin, and each
//! link, may bring into this peer's Message List. Identical on every peer
//! that runs the same settings, so that a flood is cut at the first peer it
//! reaches and every forwarder sees at most what that peer let through.
//!
//! A per-connection rate limit cannot do this: a forwarder's link carries
//! the flood and real gossip together, so a limit on it drops both, and a
//! dropped message never comes back. Here a message is judged by what it
//! claims to be. An origin is an address and the key that signs under it
//! ([`GossipOrigin`]): a flooder that names a real peer's address signs
//! with a key of its own, so it spends a budget of its own and never the
//! real peer's. The budgets are checked before a signature is, so a flood
//! costs no more signature checks than the budgets let messages in.
//!
//! - **Per origin.** Each origin may introduce at most [`ORIGIN_BURST`]
//!   new messages at once and [`origin_rate`] a second after that. An
//!   honest peer creates one message per `gossip_interval` plus the lines
//!   its user types, far below. A flood under one origin is refused at the
//!   entry peer after its burst (not delivered, not forwarded), so it
//!   never reaches the other peers' links, and messages of other origins
//!   never share its budget. Only messages that would be new are counted:
//!   duplicates, stale copies and refusals for room cost nothing.
//! - **Per link, for origins new to this peer.** A key costs nothing to
//!   make, so a flooder can name a new origin in every message. Each
//!   link may therefore introduce at most [`NEW_ORIGINS_BURST`] origins
//!   this peer does not know at once and [`NEW_ORIGINS_PER_SEC`] a second
//!   after, and hold at most [`ORIGINS_PER_LINK`] of them alive. The burst
//!   is for an honest hub: when a 1000-peer network starts, peers join one
//!   by one, each gossiping its first message as soon as it links, and a
//!   leaf hears every one of them through its one link to the hub; so
//!   does a peer joining a network whose 1000 peers are all gossiping.
//!   With spoofed origins, one link can thus bring at most
//!   `ORIGINS_PER_LINK` × [`ORIGIN_BURST`] (20,480) new messages at once,
//!   and `ORIGINS_PER_LINK` × [`origin_rate`] (1,024 at the default
//!   settings) a second after: under the per-connection GOSSIP limit of
//!   every link downstream, with room for the real traffic.
//!
//! Memory is bounded by time and rate, not by a count an attacker could
//! push entries out with: an origin whose bucket has been full for
//! [`ORIGIN_IDLE`] is forgotten (it has nothing to remember: a full bucket
//! is what a new origin gets), and at [`ORIGIN_CAPACITY`] remembered
//! origins a new one is refused rather than an active one evicted. An
//! entry takes about 100 bytes, so the table holds at most some 6.5 MiB.

use std::{net::SocketAddr, time::Duration};

use rustc_hash::FxHashMap;

use super::{GossipOrigin, PeerSettings};
use crate::proto::{time::TokenBucket, Timestamp};

/// New messages an origin may introduce at once: 20, room for a pasted
/// paragraph of typed lines, or for the messages a peer created while it
/// had no neighbour.
pub const ORIGIN_BURST: f64 = 20.0;
/// The least an origin may introduce a second, sustained: 1, five times
/// what the default settings create (one message every 5 s) and as fast
/// as anyone types lines.
pub const MIN_ORIGIN_RATE: f64 = 1.0;
/// Origins new to this peer that one link may introduce at once: 1024, a
/// 1000-peer network's every peer (see the module documentation).
pub const NEW_ORIGINS_BURST: f64 = 1024.0;
/// Origins new to this peer that one link may introduce a second,
/// sustained: 20, faster than peers join one by one through a seed
/// majority's commits.
pub const NEW_ORIGINS_PER_SEC: f64 = 20.0;
/// Origins one link may have introduced and this peer still remembers.
pub const ORIGINS_PER_LINK: u32 = NEW_ORIGINS_BURST as u32;
/// How long an origin whose bucket is full is remembered: 60 s. Forgetting
/// it loses nothing but its having been seen.
pub const ORIGIN_IDLE: Duration = Duration::from_secs(60);
/// Most origins remembered at once: 65,536, the Message List's capacity,
/// so at least one message of each fits in it.
pub const ORIGIN_CAPACITY: usize = 65_536;

/// New messages an origin may introduce a second, sustained, under
/// `settings`: [`MIN_ORIGIN_RATE`], or two per `gossip_interval` when that
/// is shorter than 2 s, so that a network run with fast gossip keeps
/// twice the room its peers need.
pub fn origin_rate(settings: &PeerSettings) -> f64 {
    let interval = settings.gossip_interval.as_secs_f64().max(1e-3);
    MIN_ORIGIN_RATE.max(2.0 / interval)
}

/// Why a message was not admitted for its origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverBudget {
    /// Its origin has used its budget.
    OriginRate,
    /// Its origin is new to this peer, and its link has introduced as
    /// many new origins as it may, or the table is full.
    NewOrigins,
}

#[derive(Debug)]
struct Origin {
    bucket: TokenBucket<Timestamp>,
    /// The link that introduced it, while that link is a neighbour.
    owner: Option<SocketAddr>,
}

#[derive(Debug)]
struct Link {
    new_origins: TokenBucket<Timestamp>,
    /// Origins it introduced that are remembered.
    owned: u32,
}

/// The admission budgets of one peer.
#[derive(Debug)]
pub struct Admission {
    rate: f64,
    origins: FxHashMap<GossipOrigin, Origin>,
    links: FxHashMap<SocketAddr, Link>,
    /// When idle origins are next looked for.
    next_sweep: Timestamp,
}

impl Admission {
    pub fn new(settings: &PeerSettings) -> Admission {
        Admission {
            rate: origin_rate(settings),
            origins: FxHashMap::default(),
            links: FxHashMap::default(),
            next_sweep: Timestamp(0),
        }
    }

    /// Whether the budgets would take one new message of `origin`, first
    /// received from `from`, taking nothing: so that a message over budget
    /// is refused before its signature costs a check.
    pub fn check(
        &mut self,
        origin: GossipOrigin,
        from: SocketAddr,
        now: Timestamp,
    ) -> Result<(), OverBudget> {
        if let Some(known) = self.origins.get_mut(&origin) {
            return match known.bucket.has_token(now) {
                true => Ok(()),
                false => Err(OverBudget::OriginRate),
            };
        }
        self.sweep(now);
        if self.origins.len() >= ORIGIN_CAPACITY {
            return Err(OverBudget::NewOrigins);
        }
        let over = self
            .links
            .get_mut(&from)
            .is_some_and(|link| link.owned >= ORIGINS_PER_LINK || !link.new_origins.has_token(now));
        match over {
            true => Err(OverBudget::NewOrigins),
            false => Ok(()),
        }
    }

    /// Takes one new message of `origin`, first received from `from`, if
    /// the budgets allow it; otherwise says which one it is over.
    pub fn admit(
        &mut self,
        origin: GossipOrigin,
        from: SocketAddr,
        now: Timestamp,
    ) -> Result<(), OverBudget> {
        self.check(origin, from, now)?;
        if let Some(known) = self.origins.get_mut(&origin) {
            known.bucket.take(now);
            return Ok(());
        }
        let link = self.links.entry(from).or_insert_with(|| Link {
            new_origins: TokenBucket::new(NEW_ORIGINS_PER_SEC, NEW_ORIGINS_BURST, now),
            owned: 0,
        });
        link.new_origins.take(now);
        link.owned += 1;
        let mut bucket = TokenBucket::new(self.rate, ORIGIN_BURST, now);
        bucket.take(now);
        self.origins.insert(
            origin,
            Origin {
                bucket,
                owner: Some(from),
            },
        );
        Ok(())
    }

    /// Forgets the origins whose buckets have been full for
    /// [`ORIGIN_IDLE`]; looks at most once per [`ORIGIN_IDLE`] / 4 (only
    /// when a new origin comes), so the cost per message stays constant.
    fn sweep(&mut self, now: Timestamp) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + ORIGIN_IDLE / 4;
        let links = &mut self.links;
        self.origins.retain(|_, o| {
            let keep = now.saturating_since(o.bucket.full_at()) < ORIGIN_IDLE;
            if !keep {
                if let Some(link) = o.owner.and_then(|l| links.get_mut(&l)) {
                    link.owned -= 1;
                }
            }
            keep
        });
    }

    /// `link` is no longer a neighbour: its budget goes, and the origins it
    /// introduced stay, owned by no link.
    pub fn link_down(&mut self, link: SocketAddr) {
        if self.links.remove(&link).is_some_and(|l| l.owned > 0) {
            for o in self.origins.values_mut() {
                if o.owner == Some(link) {
                    o.owner = None;
                }
            }
        }
    }

    /// Origins remembered.
    pub fn origins(&self) -> usize {
        self.origins.len()
    }
}
