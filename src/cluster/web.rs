//! `gossipnet up --web`: a page that shows the network as it forms, breaks
//! and heals, with buttons that run the manager's own commands.
//!
//! What the page shows comes from the nodes: which peers are registered,
//! and the overlay's links, from a seed's `STATUS_REPLY` (the committed
//! directory); everything else from the nodes' event streams, which the
//! manager already follows. The HTTP interface is documented in
//! docs/WEB.md.
//!
//! Any web page the operator visits can send requests to this server, and
//! a DNS-rebinding name can make it look same-origin, so [`Gate`] checks
//! every request: the Host header must name the server by IP address or
//! `localhost` (a rebinding name is neither), and a request that changes
//! anything must come from no other origin, be JSON (which a cross-site
//! page cannot send without a CORS preflight, never granted here) and
//! carry the run's random token, which only same-origin pages can read.

use std::{
    collections::{BTreeSet, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::{Query, Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
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
/// Where the page's copy of the token goes.
const PAGE_TOKEN_SLOT: &str = "{{GOSSIPNET_TOKEN}}";
/// The header a state-changing request carries the run's token in.
pub const TOKEN_HEADER: &str = "x-gossipnet-token";
/// The version of the HTTP interface, given in `/api/state`'s answer;
/// raised on any incompatible change. 2: `/api/command` takes JSON and the
/// token.
pub const API_VERSION: u32 = 2;
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
    /// The page, with this run's token in it.
    page: Arc<str>,
}

/// Who may use the server: checks every request before it is served.
#[derive(Clone)]
pub struct Gate {
    /// The port the server listens on; the Host header must name it.
    port: u16,
    /// This run's token, in hex: 128 bits from the operating system.
    token: Arc<str>,
}

/// A request the gate turns away: its status and what to do instead.
type Refusal = (StatusCode, String);

impl Gate {
    /// A gate for a server on `port`, with a fresh token from the
    /// operating system's randomness.
    pub fn new(port: u16) -> std::io::Result<Gate> {
        use rand::{rngs::OsRng, TryRngCore};
        let mut bytes = [0u8; 16];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| std::io::Error::other(format!("no randomness for the web token: {e}")))?;
        Ok(Gate::with_token(port, &hex::encode(bytes)))
    }

    fn with_token(port: u16, token: &str) -> Gate {
        Gate {
            port,
            token: token.into(),
        }
    }

    /// The token a state-changing request must carry in [`TOKEN_HEADER`].
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Why `method` with `headers` is refused, if it is.
    fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let host = text(header::HOST).unwrap_or_default();
        if !self.names_us(host) {
            return Err((
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this server answers to its IP address or localhost on port {}, not to Host `{host}`; open the URL `gossipnet up` printed",
                    self.port
                ),
            ));
        }
        if *method == Method::GET || *method == Method::HEAD {
            return Ok(());
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let ours = format!("http://{host}");
            if !origin.as_bytes().eq_ignore_ascii_case(ours.as_bytes()) {
                return Err((
                    StatusCode::FORBIDDEN,
                    format!(
                        "cross-origin request from {origin:?} refused; only the page at {ours}/ may send commands"
                    ),
                ));
            }
        }
        let json = text(header::CONTENT_TYPE)
            .and_then(|t| t.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send Content-Type: application/json with a body like {\"command\": \"kill peer-3\"} (docs/WEB.md)".into(),
            ));
        }
        let token = headers.get(TOKEN_HEADER).map_or(&[][..], |v| v.as_bytes());
        if !same_secret(token, self.token.as_bytes()) {
            return Err((
                StatusCode::FORBIDDEN,
                format!(
                    "missing or wrong {TOKEN_HEADER} header; send the token `gossipnet up` printed (the page has it)"
                ),
            ));
        }
        Ok(())
    }

    /// Whether a Host header names this server: an IP address or
    /// `localhost`, with our port. A DNS-rebinding attack needs a name of
    /// the attacker's, so it cannot pass.
    fn names_us(&self, host: &str) -> bool {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => (name, port.parse().ok()),
            _ => (host, Some(80)),
        };
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        port == Some(self.port)
            && (name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok())
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves a request only if the [`Gate`] lets it through.
async fn guard(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    match gate.check(request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err((status, error)) => {
            (status, Json(json!({ "ok": false, "error": error }))).into_response()
        }
    }
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
}

/// Binds `addr` and serves the page and its API until the process ends.
/// Returns the address bound (a free port when `addr`'s is 0) and the
/// gate, which holds the run's token.
pub async fn serve(
    addr: SocketAddr,
    data: SharedWebData,
    commands: mpsc::Sender<WebCommand>,
) -> std::io::Result<(SocketAddr, Gate)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let gate = Gate::new(bound.port())?;
    let app = router(data, commands, gate.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("web view stopped: {e}");
        }
    });
    Ok((bound, gate))
}

/// The page and its API, every request checked by `gate`.
fn router(data: SharedWebData, commands: mpsc::Sender<WebCommand>, gate: Gate) -> Router {
    let page = PAGE.replace(PAGE_TOKEN_SLOT, gate.token()).into();
    Router::new()
        .route("/", get(page_handler))
        .route("/api/state", get(state))
        .route("/api/command", post(command))
        .with_state(App {
            data,
            commands,
            page,
        })
        .layer(middleware::from_fn_with_state(gate, guard))
}

async fn page_handler(State(app): State<App>) -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // No other site may frame the page and trick a click on Kill.
            (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(app.page.to_string()),
    )
}

async fn state(State(app): State<App>, Query(q): Query<Since>) -> Json<Value> {
    let data = app.data.lock().expect("web data lock");
    Json(data.state(q.since))
}

/// `/api/command`'s body.
#[derive(Deserialize)]
struct CommandBody {
    command: String,
}

async fn command(State(app): State<App>, body: Bytes) -> (StatusCode, Json<Value>) {
    let refuse = |error: String| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "ok": false, "error": error })),
        )
    };
    let line = match serde_json::from_slice::<CommandBody>(&body) {
        Ok(body) => body.command.trim().to_string(),
        Err(e) => {
            return refuse(format!(
                "the body must be JSON like {{\"command\": \"kill peer-3\"}}: {e}"
            ))
        }
    };
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

    /// The web view's gate, and requests sent to its router in-process.
    mod gate {
        use super::*;
        use axum::body::Body;
        use tower::ServiceExt;

        /// The port the router believes it is on; nothing is bound.
        const PORT: u16 = 41234;
        const TOKEN: &str = "00112233445566778899aabbccddeeff";
        const OURS: &str = "127.0.0.1:41234";
        const EVIL: &str = "http://evil.example";

        fn app() -> (Router, mpsc::Receiver<WebCommand>) {
            let (commands, received) = mpsc::channel(8);
            let gate = Gate::with_token(PORT, TOKEN);
            (router(SharedWebData::default(), commands, gate), received)
        }

        /// A request to `uri` with `headers`, e.g. `[("host", OURS)]`.
        fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request {
            let mut request = Request::builder().method(method).uri(uri);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.body(Body::from(body.to_string())).unwrap()
        }

        /// The router's answer to `request`. One that the gate wrongly let
        /// through waits for a manager that never answers: that fails too.
        async fn answer(app: Router, request: Request) -> (StatusCode, HeaderMap, String) {
            let what = format!("{} {}", request.method(), request.uri());
            let response = tokio::time::timeout(Duration::from_secs(5), app.oneshot(request))
                .await
                .unwrap_or_else(|_| panic!("{what} was passed to the manager and waited"))
                .unwrap();
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            (
                parts.status,
                parts.headers,
                String::from_utf8(body.to_vec()).unwrap(),
            )
        }

        /// Asserts that the manager was handed no command.
        fn nothing_ran(received: &mut mpsc::Receiver<WebCommand>) {
            if let Ok(command) = received.try_recv() {
                panic!("the manager was asked to run `{}`", command.line);
            }
        }

        #[tokio::test]
        async fn a_cross_site_plain_text_post_is_refused_and_runs_nothing() {
            let (app, mut received) = app();
            // What a form or a no-cors fetch on any page can send: a
            // "simple" request, with the visited site's Origin or none.
            for origin in [Some(EVIL), None] {
                let mut headers = vec![("host", OURS), ("content-type", "text/plain")];
                headers.extend(origin.map(|o| ("origin", o)));
                let (status, _, body) = answer(
                    app.clone(),
                    request("POST", "/api/command", &headers, "kill peer-3"),
                )
                .await;
                assert!(
                    status == StatusCode::FORBIDDEN || status == StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "origin {origin:?}: {status} {body}"
                );
                assert!(body.contains("\"ok\":false"), "{body}");
            }
            nothing_ran(&mut received);
        }

        #[tokio::test]
        async fn a_foreign_origin_is_refused_even_with_the_token() {
            let (app, mut received) = app();
            let (status, _, body) = answer(
                app,
                request(
                    "POST",
                    "/api/command",
                    &[
                        ("host", OURS),
                        ("origin", EVIL),
                        ("content-type", "application/json"),
                        (TOKEN_HEADER, TOKEN),
                    ],
                    r#"{"command": "kill peer-3"}"#,
                ),
            )
            .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            assert!(body.contains("cross-origin"), "{body}");
            nothing_ran(&mut received);
        }

        #[tokio::test]
        async fn a_json_command_without_the_right_token_is_refused() {
            let (app, mut received) = app();
            for token in [None, Some("ffeeddccbbaa99887766554433221100"), Some("0011")] {
                let mut headers = vec![("host", OURS), ("content-type", "application/json")];
                headers.extend(token.map(|t| (TOKEN_HEADER, t)));
                let (status, _, body) = answer(
                    app.clone(),
                    request(
                        "POST",
                        "/api/command",
                        &headers,
                        r#"{"command": "kill peer-3"}"#,
                    ),
                )
                .await;
                assert_eq!(status, StatusCode::FORBIDDEN, "token {token:?}: {body}");
                assert!(body.contains(TOKEN_HEADER), "{body}");
            }
            nothing_ran(&mut received);
        }

        #[tokio::test]
        async fn a_dns_rebinding_host_name_is_refused_on_every_route() {
            let (app, mut received) = app();
            let evil_host = "evil.example:41234";
            let evil_origin = "http://evil.example:41234";
            let requests = [
                request("GET", "/", &[("host", evil_host)], ""),
                request("GET", "/api/state", &[("host", evil_host)], ""),
                request(
                    "POST",
                    "/api/command",
                    &[
                        ("host", evil_host),
                        ("origin", evil_origin),
                        ("content-type", "application/json"),
                        (TOKEN_HEADER, TOKEN),
                    ],
                    r#"{"command": "kill peer-3"}"#,
                ),
            ];
            for request in requests {
                let what = format!("{} {}", request.method(), request.uri());
                let (status, _, body) = answer(app.clone(), request).await;
                assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{what}: {body}");
                assert!(!body.contains(TOKEN), "{what} gave away the token");
            }
            nothing_ran(&mut received);
        }

        #[tokio::test]
        async fn a_same_origin_json_command_with_the_token_runs() {
            let (app, mut received) = app();
            let manager = tokio::spawn(async move {
                let command = received.recv().await.expect("a command");
                let line = command.line.clone();
                let _ = command.reply.send(Ok(format!("ran {line}")));
                line
            });
            let (status, _, body) = answer(
                app,
                request(
                    "POST",
                    "/api/command",
                    &[
                        ("host", "localhost:41234"),
                        ("origin", "http://localhost:41234"),
                        ("content-type", "application/json; charset=utf-8"),
                        (TOKEN_HEADER, TOKEN),
                    ],
                    r#"{"command": " kill peer-3 "}"#,
                ),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap(),
                json!({ "ok": true, "output": "ran kill peer-3" })
            );
            assert_eq!(manager.await.unwrap(), "kill peer-3");
        }

        #[tokio::test]
        async fn the_page_carries_the_token_and_no_other_site_may_frame_it() {
            let (app, _received) = app();
            let (status, headers, body) =
                answer(app.clone(), request("GET", "/", &[("host", OURS)], "")).await;
            assert_eq!(status, StatusCode::OK);
            assert!(
                body.contains(&format!(
                    r#"<meta name="gossipnet-token" content="{TOKEN}">"#
                )),
                "the page lacks the token"
            );
            assert!(!body.contains(PAGE_TOKEN_SLOT));
            assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                "frame-ancestors 'none'"
            );
            let (status, _, body) = answer(
                app,
                request("GET", "/api/state", &[("host", "[::1]:41234")], ""),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }

        #[test]
        fn the_server_answers_to_ip_addresses_and_localhost_on_its_port_only() {
            let gate = Gate::with_token(PORT, TOKEN);
            for ours in [
                "127.0.0.1:41234",
                "localhost:41234",
                "LocalHost:41234",
                "[::1]:41234",
                "192.168.1.20:41234",
            ] {
                assert!(gate.names_us(ours), "{ours} refused");
            }
            for foreign in [
                "evil.example:41234",
                "127.0.0.1.nip.io:41234",
                "localhost.evil.example:41234",
                "127.0.0.1:41235",
                "127.0.0.1",
                "[::1]",
                "::1",
                "",
            ] {
                assert!(!gate.names_us(foreign), "{foreign} accepted");
            }
            assert!(Gate::with_token(80, TOKEN).names_us("127.0.0.1"));
        }

        #[test]
        fn tokens_are_128_bits_of_hex_and_differ_between_runs() {
            let (a, b) = (Gate::new(PORT).unwrap(), Gate::new(PORT).unwrap());
            assert_eq!(a.token().len(), 32);
            assert!(a.token().bytes().all(|c| c.is_ascii_hexdigit()));
            assert_ne!(a.token(), b.token());
        }
    }
}
