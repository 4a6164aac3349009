//! Per-connection abuse limits: how many frames of each costly kind a
//! remote may send, so that one connection cannot flood a node's gossip or
//! its seeds' Raft log. See docs/SECURITY.md.

use std::time::Instant;

use crate::proto::message::Message;
pub use crate::proto::time::{RefusalLog, TokenBucket, LIMIT_LOG_EVERY};

/// GOSSIP frames a connection may deliver per second, sustained. This is
/// only a backstop against raw frame floods (duplicates, refused or
/// malformed-but-parseable messages), which cost a decode and a hash each:
/// 10,000 a second is a few per cent of one core. What may spread is
/// bounded by the peer core's admission budgets (`proto::peer::admission`),
/// which cut a flood at the first peer it reaches; so a forwarder's link
/// carries at most what honest peers create plus what one entry admitted
/// (1,024 a second at most per flooding link, at the default settings),
/// and this limit must stay above that, or it would drop real gossip
/// together with the flood and the real messages would never come back.
pub const GOSSIP_PER_SEC: f64 = 10_000.0;
/// GOSSIP frames a connection may deliver at once, after a quiet spell:
/// above the most one flooding link can get admitted at once with spoofed
/// origins (1,024 origins × 20 messages = 20,480), with as much again for
/// real gossip.
pub const GOSSIP_BURST: f64 = 50_000.0;
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

/// Why a link whose send queue holds `queued` bytes must be closed rather
/// than take a frame costing `cost` more, if it must: the queue would pass
/// [`LINK_SEND_QUEUE_BYTES`], so the remote is too slow. The driver asks
/// this of every frame it queues; the simulator asks it of the frames a
/// slow reader leaves unread.
pub fn link_queue_overflow(queued: usize, cost: usize) -> Option<String> {
    (queued + cost > LINK_SEND_QUEUE_BYTES).then(|| {
        format!(
            "its send queue would pass {LINK_SEND_QUEUE_BYTES} bytes ({queued} queued); the remote is too slow"
        )
    })
}

/// Bytes queued for all of a node's sockets together; past it, the
/// connection holding the most is closed as too slow. Eight slow links at
/// their own limit.
pub const NODE_SEND_QUEUE_BYTES: usize = 32 << 20;
/// Bytes of received frames waiting for the node's driver, all connections
/// together: 16 frames of the largest size. A connection finding no room
/// stops reading until there is, so its sender is slowed by TCP itself.
pub const RECEIVE_QUEUE_BYTES: usize = 16 << 20;

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
    gossip: TokenBucket<Instant>,
    reports: TokenBucket<Instant>,
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
            | Message::DeadReport { .. }
            | Message::DialFailed { .. }
            | Message::Leave { .. } => (&mut self.reports, false),
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
    use std::time::Duration;

    use super::*;

    fn gossip() -> Message {
        let identity = crate::proto::evidence::Identity::from_secret([1; 32]);
        Message::gossip_signed_by(&identity, "127.0.0.1:1".parse().unwrap(), "m", 0)
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
        let delivered = (0..100_000)
            .filter(|_| limits.admit(&gossip(), t0) == Admit::Deliver)
            .count();
        assert_eq!(delivered, GOSSIP_BURST as usize);
        assert_eq!(limits.admit(&gossip(), t0), Admit::Drop);
        assert_eq!(
            limits.admit(&Message::Ping { nonce: 1 }, t0),
            Admit::Deliver
        );
        let later = t0 + Duration::from_secs(1);
        let delivered = (0..100_000)
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
        let links = Message::LinkReport {
            neighbors: vec![],
            incarnation: 1,
            seq: 1,
        };
        assert_eq!(limits.admit(&links, t0), Admit::Hold);
        let free = limits.reports_free_at(t0);
        assert!(
            free > t0 && free <= t0 + Duration::from_millis(50),
            "{free:?}"
        );
        assert!(limits.take_report(free));
    }
}
