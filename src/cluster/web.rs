//! `gossipnet up --web`: a page that shows the network as it forms, breaks
//! and heals, with buttons that run the manager's own commands.
//!
//! What the page shows comes from the nodes: which peers are registered,
//! and the overlay's links, from a seed's `STATUS_REPLY` (the committed
//! directory); everything else from the nodes' event streams, which the
//! manager already follows. The HTTP interface is documented in
//! docs/WEB.md.

use std::{
    collections::{BTreeSet, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Query, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::{command::ManagerCommand, parse_command, view, NetworkView};
use crate::{
    net::{conn, secure::NetworkKey},
    output::EventRecord,
    proto::{message::Message, Role},
};

/// The page, with its script and styles inline: it needs nothing else.
const PAGE: &str = include_str!("web/index.html");
/// The version of `/api/state`'s answer; raised on any incompatible change.
pub const API_VERSION: u32 = 1;
/// Events kept for pages that poll; older ones are dropped.
const EVENTS_KEPT: usize = 500;
/// How often a seed is asked for the committed directory.
const COMMITTED_EVERY: Duration = Duration::from_secs(1);
/// A peer that went down is drawn red at least this long, even if its
/// removal commits sooner, so that a person (and a page polling twice a
/// second) sees it go.
const SHOWN_DOWN_AT_LEAST: Duration = Duration::from_secs(2);
/// How long one seed may take to answer before the next is tried.
const SEED_ANSWER_LIMIT: Duration = Duration::from_millis(700);

/// A command typed on the page, with where its reply goes.
pub struct WebCommand {
    pub line: String,
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// What a seed says is committed: registered peers and recorded links.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Committed {
    pub peers: BTreeSet<SocketAddr>,
    pub links: BTreeSet<(SocketAddr, SocketAddr)>,
}

impl Committed {
    /// From a seed's `STATUS_REPLY` body (see docs/PROTOCOL.md).
    fn from_status(status: &Value) -> Option<Committed> {
        let addr = |v: &Value| v.as_str()?.parse::<SocketAddr>().ok();
        let peers = status["peers"]
            .as_array()?
            .iter()
            .filter_map(|p| addr(&p["addr"]))
            .collect();
        let links = status["topology"]
            .as_array()?
            .iter()
            .filter_map(|pair| Some((addr(&pair[0])?, addr(&pair[1])?)))
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
        Some(Committed { peers, links })
    }
}

/// What the manager knows of one node, for the page.
pub struct NodeFacts {
    pub name: String,
    pub addr: SocketAddr,
    pub role: Role,
    /// Running or paused: not killed, stopped or exited.
    pub alive: bool,
    pub paused: bool,
    /// How long ago it went down; zero while alive.
    pub down_for: Duration,
}

/// Shared between the manager, which writes, and the server, which reads.
#[derive(Default)]
pub struct WebData {
    /// Nodes, links and counters, as `/api/state` gives them.
    picture: Value,
    events: VecDeque<(u64, Value)>,
    next_seq: u64,
    committed: Option<Committed>,
}

impl WebData {
    pub fn push_event(&mut self, record: &EventRecord) {
        let Ok(mut event) = serde_json::to_value(record) else {
            return;
        };
        event["seq"] = json!(self.next_seq);
        self.events.push_back((self.next_seq, event));
        self.next_seq += 1;
        if self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }

    pub fn committed(&self) -> Option<&Committed> {
        self.committed.as_ref()
    }

    pub fn set_picture(&mut self, picture: Value) {
        self.picture = picture;
    }

    /// `/api/state`: the picture, and the events from `since` on.
    fn state(&self, since: u64) -> Value {
        let mut state = self.picture.clone();
        if !state.is_object() {
            state = json!({ "nodes": [], "links": [], "counters": {} });
        }
        state["version"] = json!(API_VERSION);
        state["events"] = self
            .events
            .iter()
            .filter(|(seq, _)| *seq >= since)
            .map(|(_, e)| e.clone())
            .collect();
        state["next"] = json!(self.next_seq);
        state
    }
}

pub type SharedWebData = Arc<Mutex<WebData>>;

/// The nodes, links and counters the page draws.
///
/// A peer that is down stays, red, until the seeds' committed directory
/// no longer lists it (and for [`SHOWN_DOWN_AT_LEAST`] in any case); then
/// it is left out, and vanishes from the page.
/// Links are the committed ones (until a seed has answered, the peers' own
/// word), between peers that are drawn and alive.
pub fn picture(nodes: &[NodeFacts], view: &NetworkView, committed: Option<&Committed>) -> Value {
    let drawn: Vec<&NodeFacts> = nodes
        .iter()
        .filter(|n| {
            n.alive
                || n.role == Role::Seed
                || n.down_for < SHOWN_DOWN_AT_LEAST
                || committed.is_none_or(|c| c.peers.contains(&n.addr))
        })
        .collect();
    let alive_peers: BTreeSet<SocketAddr> = drawn
        .iter()
        .filter(|n| n.alive && n.role == Role::Peer)
        .map(|n| n.addr)
        .collect();
    let links: Vec<(SocketAddr, SocketAddr)> = committed
        .map_or_else(|| view.links(), |c| c.links.clone())
        .into_iter()
        .filter(|(a, b)| alive_peers.contains(a) && alive_peers.contains(b))
        .collect();
    let degrees = view::degrees(&links);
    let state = |n: &NodeFacts| match () {
        _ if !n.alive => "removed",
        _ if n.paused => "paused",
        _ if view.is_suspected(&n.addr) => "suspected",
        _ => "alive",
    };
    let stats = view.stats();
    json!({
        "nodes": drawn.iter().map(|n| json!({
            "name": n.name,
            "address": n.addr,
            "role": n.role.as_str(),
            "state": state(n),
            "degree": degrees.get(&n.addr).copied().unwrap_or(0),
            "messages": view.node(&n.addr).map_or(0, |s| s.messages_seen),
        })).collect::<Vec<_>>(),
        "links": links.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>(),
        "counters": {
            "peers_up": alive_peers.len(),
            "peers_total": drawn.iter().filter(|n| n.role == Role::Peer).count(),
            "links": links.len(),
            "messages": stats.summary.messages,
            "delivered": stats.summary.delivered,
            "expected": stats.summary.expected,
            "suspicions": stats.suspicions,
            "removals": stats.removals,
        },
    })
}

#[derive(Clone)]
struct App {
    data: SharedWebData,
    commands: mpsc::Sender<WebCommand>,
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

/// Binds `addr` and serves the page and its API until the process ends.
/// Returns the address bound (a free port when `addr`'s is 0).
pub async fn serve(
    addr: SocketAddr,
    data: SharedWebData,
    commands: mpsc::Sender<WebCommand>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(page))
        .route("/api/state", get(state))
        .route("/api/command", post(command))
        .with_state(App { data, commands });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("web view stopped: {e}");
        }
    });
    Ok(bound)
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

async fn state(State(app): State<App>, Query(q): Query<Since>) -> Json<Value> {
    let data = app.data.lock().expect("web data lock");
    Json(data.state(q.since))
}

async fn command(State(app): State<App>, body: String) -> (StatusCode, Json<Value>) {
    let refuse = |error: String| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "ok": false, "error": error })),
        )
    };
    let line = body.trim().to_string();
    match parse_command(&line) {
        Err(e) => return refuse(e),
        Ok(None) => return refuse("empty command".into()),
        Ok(Some(ManagerCommand::Exit | ManagerCommand::Sleep(_))) => {
            return refuse(format!("`{line}` is for the terminal, not the web view"))
        }
        Ok(Some(_)) => {}
    }
    let (reply, answer) = oneshot::channel();
    if app.commands.send(WebCommand { line, reply }).await.is_err() {
        return refuse("the manager is stopping".into());
    }
    match answer.await {
        Ok(Ok(output)) => (
            StatusCode::OK,
            Json(json!({ "ok": true, "output": output })),
        ),
        Ok(Err(error)) => refuse(error),
        Err(_) => refuse("the manager is stopping".into()),
    }
}

/// Asks the seeds, in turn, for the committed directory, every second,
/// and keeps the latest answer.
pub async fn follow_committed(
    seeds: Vec<SocketAddr>,
    network_key: Option<Arc<NetworkKey>>,
    data: SharedWebData,
) {
    let mut every = tokio::time::interval(COMMITTED_EVERY);
    loop {
        every.tick().await;
        for seed in &seeds {
            let answer = conn::query(
                *seed,
                &Message::StatusRequest {},
                SEED_ANSWER_LIMIT,
                network_key.as_deref(),
                &Default::default(),
            )
            .await;
            let Ok(Message::StatusReply { status }) = answer else {
                continue;
            };
            if let Some(committed) = Committed::from_status(&status) {
                data.lock().expect("web data lock").committed = Some(committed);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Event;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn facts(port: u16, role: Role, alive: bool, paused: bool) -> NodeFacts {
        NodeFacts {
            name: format!("n{port}"),
            addr: a(port),
            role,
            alive,
            paused,
            down_for: if alive {
                Duration::ZERO
            } else {
                Duration::from_secs(60)
            },
        }
    }

    fn state_of(picture: &Value, port: u16) -> Option<String> {
        picture["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["address"] == json!(a(port)))
            .map(|n| n["state"].as_str().unwrap().to_string())
    }

    #[test]
    fn a_dead_peer_is_red_until_its_removal_commits_then_gone() {
        let mut view = NetworkView::default();
        view.apply(&EventRecord {
            ts_us: 1,
            node: a(6001),
            event: Event::SuspicionStarted {
                peer: a(6002),
                reason: "no answer".into(),
            },
        });
        let nodes = [
            facts(5000, Role::Seed, true, false),
            facts(6001, Role::Peer, true, false),
            facts(6002, Role::Peer, true, false),
            facts(6003, Role::Peer, true, true),
            facts(6004, Role::Peer, false, false),
        ];
        let mut committed = Committed {
            peers: [6001, 6002, 6003, 6004].map(a).into(),
            links: [(a(6001), a(6002)), (a(6001), a(6004))].into(),
        };
        let picture1 = picture(&nodes, &view, Some(&committed));
        assert_eq!(state_of(&picture1, 5000).as_deref(), Some("alive"));
        assert_eq!(state_of(&picture1, 6002).as_deref(), Some("suspected"));
        assert_eq!(state_of(&picture1, 6003).as_deref(), Some("paused"));
        assert_eq!(state_of(&picture1, 6004).as_deref(), Some("removed"));
        // The link to the dead peer is not drawn.
        assert_eq!(picture1["links"], json!([[a(6001), a(6002)]]));
        assert_eq!(picture1["counters"]["peers_up"], json!(3));
        let degree_of = |port: u16| {
            picture1["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["address"] == json!(a(port)))
                .unwrap()["degree"]
                .clone()
        };
        assert_eq!((degree_of(6001), degree_of(6003)), (json!(1), json!(0)));

        committed.peers.remove(&a(6004));
        let picture2 = picture(&nodes, &view, Some(&committed));
        assert_eq!(state_of(&picture2, 6004), None);
        assert_eq!(picture2["nodes"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn a_peer_that_just_went_down_is_shown_red_even_if_already_removed() {
        let view = NetworkView::default();
        let mut just_killed = facts(6004, Role::Peer, false, false);
        just_killed.down_for = Duration::from_millis(300);
        let committed = Committed::default();
        let shown = picture(&[just_killed], &view, Some(&committed));
        assert_eq!(state_of(&shown, 6004).as_deref(), Some("removed"));
    }

    #[test]
    fn a_status_reply_gives_the_committed_peers_and_links() {
        let status = json!({
            "peers": [{"addr": "127.0.0.1:6001", "incarnation": 1}, {"addr": "127.0.0.1:6002", "incarnation": 1}],
            "topology": [["127.0.0.1:6002", "127.0.0.1:6001"]],
        });
        let committed = Committed::from_status(&status).unwrap();
        assert_eq!(committed.peers, [a(6001), a(6002)].into());
        assert_eq!(committed.links, [(a(6001), a(6002))].into());
        assert_eq!(Committed::from_status(&json!({"error": "not ready"})), None);
    }

    #[test]
    fn the_state_gives_events_from_the_asked_sequence_number_on() {
        let mut data = WebData::default();
        for ts in 0..3 {
            data.push_event(&EventRecord {
                ts_us: ts,
                node: a(6001),
                event: Event::Shutdown,
            });
        }
        let state = data.state(1);
        let seqs: Vec<u64> = state["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(state["next"], json!(3));
        assert_eq!(state["version"], json!(API_VERSION));
        assert_eq!(state["events"][0]["event"], json!("shutdown"));
    }
}
