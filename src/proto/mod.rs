//! Sans-IO protocol cores.
//!
//! Nothing in here opens a socket, reads a clock or spawns a task. A core is
//! driven by method calls (`handle_message`, `handle_timer`, ...) that carry
//! the current [`Timestamp`], and it answers with [`Output`] values that the
//! caller drains: send this, dial that, close this link, wake me at that
//! time, log this event. The tokio driver (`crate::net`) and the simulator
//! run the very same cores. The pattern follows quinn-proto, raft-rs
//! (`RawNode`) and iroh-gossip's `proto` module.

pub mod event;
pub mod evidence;
pub mod message;
pub mod peer;
pub mod seed;
pub mod sorted;
pub mod time;
pub mod topology;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

pub use event::{Event, GossipRefusal};
pub use message::{Message, Role};
pub use seed::directory::{majority, Command, Directory, Outcome};
pub use time::Timestamp;

/// Something a core asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output<T> {
    /// Deliver `msg` to the node that listens on `to`, dialling it first if
    /// there is no connection. A failed dial comes back as `handle_link_down`.
    Send { to: SocketAddr, msg: Message },
    /// Open an overlay link to `to`; success comes back as `handle_link_up`.
    Connect(SocketAddr),
    /// Drop the connection to `to`, if any.
    Close(SocketAddr),
    /// Call `handle_timer(timer)` at or after `at`. Timers may fire late; a
    /// core ignores one that no longer applies.
    Timer { timer: T, at: Timestamp },
    /// Log this event.
    Event(Event),
    /// Seeds: append `command` to the seeds' replicated log. It may be lost
    /// (no leader, no majority); whoever needs it retries. Every seed learns
    /// what was applied through `handle_applied`.
    Propose(Command),
    /// Dial `to` on a fresh connection and send the one-shot `query`
    /// (PROBE, SUSPECT_REQUEST) instead of HELLO. Its answer, or why there
    /// is none by `timeout`, comes back as `handle_query_result`.
    Query {
        to: SocketAddr,
        query: Message,
        timeout: Duration,
    },
    /// Answer the one-shot query `token` (see `handle_query`) with `msg`;
    /// its connection then closes.
    Reply { token: u64, msg: Message },
    /// Peers with `--icmp`: send an ICMP echo to `host`; whether it
    /// answered within `timeout` comes back as `handle_icmp_result`.
    IcmpEcho { host: IpAddr, timeout: Duration },
}

impl<T> Output<T> {
    /// The same output, with its timer (if it is one) mapped by `f`.
    pub fn map_timer<U>(self, f: impl FnOnce(T) -> U) -> Output<U> {
        match self {
            Output::Send { to, msg } => Output::Send { to, msg },
            Output::Connect(to) => Output::Connect(to),
            Output::Close(to) => Output::Close(to),
            Output::Timer { timer, at } => Output::Timer {
                timer: f(timer),
                at,
            },
            Output::Event(event) => Output::Event(event),
            Output::Propose(command) => Output::Propose(command),
            Output::Query { to, query, timeout } => Output::Query { to, query, timeout },
            Output::Reply { token, msg } => Output::Reply { token, msg },
            Output::IcmpEcho { host, timeout } => Output::IcmpEcho { host, timeout },
        }
    }
}

/// Why a one-shot query (`Output::Query`) got no answer. Only
/// [`QueryError::NoConnection`] and [`QueryError::NoAnswer`] say anything
/// about whether the node there lives: a node that turned the query away
/// was running to do so ("I could not get in" is no evidence of death).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// Nothing took the connection: it was refused (nobody listens on that
    /// port) or not set up within the limit (the host is down or cut off).
    NoConnection(String),
    /// The connection was taken, but no answer came within the limit: the
    /// process is frozen (its kernel still accepts) or far too slow.
    NoAnswer(String),
    /// The node closed or reset the connection before answering: it turned
    /// the query away, over a limit say.
    TurnedAway(String),
    /// An answer came, but not one the query can use.
    BadAnswer(String),
}

impl QueryError {
    /// Whether this failure is evidence that nothing alive answers there.
    pub fn counts_as_down(&self) -> bool {
        matches!(
            self,
            QueryError::NoConnection(_) | QueryError::NoAnswer(_) | QueryError::BadAnswer(_)
        )
    }

    /// Why, in words.
    pub fn reason(&self) -> &str {
        match self {
            QueryError::NoConnection(r)
            | QueryError::NoAnswer(r)
            | QueryError::TurnedAway(r)
            | QueryError::BadAnswer(r) => r,
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// The interface every driver uses to run a core.
pub trait Core {
    type Timer: Clone + std::fmt::Debug + Send + 'static;

    fn role(&self) -> Role;
    /// The listen address: the node's identity.
    fn addr(&self) -> SocketAddr;
    fn start(&mut self, now: Timestamp);
    fn handle_message(&mut self, from: SocketAddr, msg: Message, now: Timestamp);
    /// A connection to `remote` completed its HELLO exchange.
    fn handle_link_up(&mut self, remote: SocketAddr, role: Role, now: Timestamp);
    /// The connection to `remote` is gone, or could not be opened.
    fn handle_link_down(&mut self, remote: SocketAddr, now: Timestamp);
    fn handle_timer(&mut self, timer: Self::Timer, now: Timestamp);
    /// The node is stopping cleanly (SIGINT, SIGTERM). A peer sends its
    /// LEAVE on the connections it has; the driver flushes them before it
    /// closes. Nothing is handled after this.
    fn handle_shutdown(&mut self, _now: Timestamp) {}
    /// A line the user typed. Only peers gossip it; seeds ignore it.
    fn handle_user_line(&mut self, _line: &str, _now: Timestamp) {}
    /// The incarnation this node states when a seed probes it.
    fn incarnation(&self) -> u64 {
        0
    }
    /// The public key this node states when a seed probes it; peers only.
    fn public_key(&self) -> Option<message::PublicKey> {
        None
    }
    /// Whether `addr` is one of the seeds of the config.
    fn is_seed(&self, addr: &SocketAddr) -> bool;
    /// The key pinned for seed `addr`, if any; a node at that address must
    /// prove it. Seeds: the one their committed log pins. Peers: the one
    /// the other seeds' Peer Lists agree on.
    fn pinned_key(&self, _addr: &SocketAddr) -> Option<message::PublicKey> {
        None
    }
    /// A node that proved `key` claims to be `addr`. If the committed log
    /// pins another key for that seed, that pinned key: the connection
    /// must be refused. `None`: nothing against it (also when no key is
    /// pinned yet).
    fn pinned_key_refusing(
        &self,
        addr: &SocketAddr,
        key: &message::PublicKey,
    ) -> Option<message::PublicKey> {
        self.pinned_key(addr).filter(|pinned| pinned != key)
    }
    /// Whether the keys [`Core::pinned_key`] answers with changed since
    /// this was last asked, so that open connections must be checked
    /// again. The seeds' change only as entries apply, which the driver
    /// sees itself.
    fn take_pinned_keys_changed(&mut self) -> bool {
        false
    }
    /// The answer to an `Output::Query` sent to `to`, or why there is none.
    fn handle_query_result(
        &mut self,
        _to: SocketAddr,
        _query: Message,
        _result: Result<Message, QueryError>,
        _now: Timestamp,
    ) {
    }
    /// A one-shot query arrived: SUSPECT_REQUEST on peers, REKEY_REQUEST
    /// on seeds. The core answers it with `Output::Reply { token, .. }`,
    /// at once or later.
    fn handle_query(&mut self, _token: u64, _query: Message, _now: Timestamp) {}
    /// Peers: the answer to an `Output::IcmpEcho`.
    fn handle_icmp_result(&mut self, _host: IpAddr, _result: Result<(), String>, _now: Timestamp) {}
    /// Seeds: an entry of the replicated log was applied, with its outcome.
    fn handle_applied(&mut self, _command: &Command, _outcome: &Outcome, _now: Timestamp) {}
    /// Seeds: the whole directory was replaced by a snapshot (catch-up).
    fn handle_snapshot(&mut self, _directory: Directory, _now: Timestamp) {}
    /// Seeds: the seed leading the log is now `leader`.
    fn handle_leader(&mut self, _leader: Option<SocketAddr>, _now: Timestamp) {}
    fn poll_output(&mut self) -> Option<Output<Self::Timer>>;
}
