//! Per-connection abuse limits: how many frames of each costly kind a
//! remote may send, so that one connection cannot flood a node's gossip or
//! its seeds' Raft log. See docs/SECURITY.md.

use std::time::{Duration, Instant};

use crate::proto::message::Message;
pub use crate::proto::time::{RefusalLog, LIMIT_LOG_EVERY};

/// GOSSIP frames a connection may deliver per second, sustained. Each
/// message crosses each link at most once per direction, so this is also
/// the most messages per second the whole network can create before
/// links start dropping gossip: ten times what the benchmark found one
/// 100-peer network on one machine can carry (docs/BENCHMARKS.md).
pub const GOSSIP_PER_SEC: f64 = 2000.0;
/// GOSSIP frames a connection may deliver at once, after a quiet spell.
pub const GOSSIP_BURST: f64 = 4000.0;
/// Reports and requests to seeds (REGISTER_REQUEST, PEER_LIST_REQUEST,
/// LINK_REPORT, DEAD_REPORT) a connection may deliver per second,
/// sustained. An honest peer sends about one a second at most, more
/// only while many neighbours join or leave at once.
pub const REPORTS_PER_SEC: f64 = 20.0;
/// Such reports a connection may deliver at once.
pub const REPORTS_BURST: f64 = 100.0;
/// Connections a node accepts at once, by default (`--max-inbound`).
pub const DEFAULT_MAX_INBOUND: usize = 1024;
/// Bytes queued for one connection's socket. A remote that stops reading
/// holds at most this much of the node's memory before it is closed as too
/// slow: 64 full-size GOSSIP messages, or thousands of ordinary frames.
pub const LINK_SEND_QUEUE_BYTES: usize = 4 << 20;
/// Bytes queued for all of a node's sockets together; past it, the
/// connection holding the most is closed as too slow. Eight slow links at
/// their own limit.
pub const NODE_SEND_QUEUE_BYTES: usize = 32 << 20;
/// Bytes of received frames waiting for the node's driver, all connections
/// together: 16 frames of the largest size. A connection finding no room
/// stops reading until there is, so its sender is slowed by TCP itself.
pub const RECEIVE_QUEUE_BYTES: usize = 16 << 20;

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be there.
    pub fn next_token_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        let missing = (1.0 - self.tokens).max(0.0);
        now + Duration::from_secs_f64(missing / self.rate)
    }
}

/// What to do with a frame, by the connection's limits.
#[derive(Debug, Clone, PartialEq)]
pub enum Admit {
    /// Within the limits: deliver it.
    Deliver,
    /// Over the limit: drop it.
    Drop,
    /// A LINK_REPORT over the limit: keep it, replacing any kept before,
    /// and deliver it when the limit allows. A LINK_REPORT is a peer's
    /// whole neighbour set, so only the newest matters and nothing is lost.
    Hold,
}

/// The limits of one connection.
#[derive(Debug, Clone)]
pub struct FrameLimits {
    gossip: TokenBucket,
    reports: TokenBucket,
}

impl FrameLimits {
    pub fn new(now: Instant) -> FrameLimits {
        FrameLimits {
            gossip: TokenBucket::new(GOSSIP_PER_SEC, GOSSIP_BURST, now),
            reports: TokenBucket::new(REPORTS_PER_SEC, REPORTS_BURST, now),
        }
    }

    pub fn admit(&mut self, msg: &Message, now: Instant) -> Admit {
        // A LINK_REPORT is held rather than dropped (see [`Admit::Hold`]).
        let (bucket, hold) = match msg {
            Message::Gossip { .. } => (&mut self.gossip, false),
            Message::LinkReport { .. } => (&mut self.reports, true),
            Message::RegisterRequest { .. }
            | Message::PeerListRequest {}
            | Message::DeadReport { .. } => (&mut self.reports, false),
            _ => return Admit::Deliver,
        };
        match (bucket.take(now), hold) {
            (true, _) => Admit::Deliver,
            (false, true) => Admit::Hold,
            (false, false) => Admit::Drop,
        }
    }

    /// When a held LINK_REPORT may go.
    pub fn reports_free_at(&mut self, now: Instant) -> Instant {
        self.reports.next_token_at(now)
    }

    /// Takes a report token for a held LINK_REPORT, if one is there.
    pub fn take_report(&mut self, now: Instant) -> bool {
        self.reports.take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gossip() -> Message {
        Message::Gossip {
            origin: "127.0.0.1:1".parse().unwrap(),
            msg: "m".into(),
            hops: 0,
        }
    }

    #[test]
    fn refusals_are_logged_at_once_then_once_a_second_with_a_count() {
        let t0 = Instant::now();
        let mut log = RefusalLog::default();
        assert_eq!(log.note(t0), Some(1));
        for i in 0..500 {
            assert_eq!(log.note(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(log.note(t0 + LIMIT_LOG_EVERY), Some(501));
        assert_eq!(log.note(t0 + LIMIT_LOG_EVERY), None);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 5.0, t0);
        assert_eq!((0..20).filter(|_| bucket.take(t0)).count(), 5);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| bucket.take(t1)).count(), 5);
        // A long quiet spell refills no more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| bucket.take(t2)).count(), 5);
        let next = bucket.next_token_at(t2);
        assert_eq!(next, t2 + Duration::from_millis(100));
        assert!(bucket.take(next));
    }

    #[test]
    fn a_gossip_flood_is_cut_to_the_limit_and_other_frames_pass() {
        let t0 = Instant::now();
        let mut limits = FrameLimits::new(t0);
        let delivered = (0..10_000)
            .filter(|_| limits.admit(&gossip(), t0) == Admit::Deliver)
            .count();
        assert_eq!(delivered, GOSSIP_BURST as usize);
        assert_eq!(limits.admit(&gossip(), t0), Admit::Drop);
        assert_eq!(
            limits.admit(&Message::Ping { nonce: 1 }, t0),
            Admit::Deliver
        );
        let later = t0 + Duration::from_secs(1);
        let delivered = (0..10_000)
            .filter(|_| limits.admit(&gossip(), later) == Admit::Deliver)
            .count();
        assert_eq!(delivered, GOSSIP_PER_SEC as usize);
    }

    #[test]
    fn reports_over_the_limit_are_dropped_but_link_reports_are_held() {
        let t0 = Instant::now();
        let mut limits = FrameLimits::new(t0);
        let request = Message::PeerListRequest {};
        let delivered = (0..1000)
            .filter(|_| limits.admit(&request, t0) == Admit::Deliver)
            .count();
        assert_eq!(delivered, REPORTS_BURST as usize);
        assert_eq!(limits.admit(&request, t0), Admit::Drop);
        let links = Message::LinkReport { neighbors: vec![] };
        assert_eq!(limits.admit(&links, t0), Admit::Hold);
        let free = limits.reports_free_at(t0);
        assert!(
            free > t0 && free <= t0 + Duration::from_millis(50),
            "{free:?}"
        );
        assert!(limits.take_report(free));
    }
}
