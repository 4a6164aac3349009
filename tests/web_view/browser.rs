//! The live web view of `gossipnet up --web` in headless Chromium: the page
//! draws every node, and a click on Kill turns a peer red, then takes it
//! off the graph once the seeds commit its removal. And, over plain HTTP,
//! its API refuses what another site or a DNS-rebinding name could send.
//!
//! Chromium is driven over its DevTools protocol on a pipe pair
//! (`--remote-debugging-pipe`: commands on fd 3, answers on fd 4), so the
//! test needs no WebSocket client and no port. `.ci/run` installs Debian's
//! chromium and sets GOSSIPNET_REQUIRE_BROWSER=1, which makes a missing
//! browser a failure; elsewhere the harness (main.rs) reports the browser
//! test as ignored, with the reason.
#![cfg(unix)]

use crate::common;

use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// Screenshots of the page, kept for people to look at: with the killed
/// peer red, and after it left the graph.
const SCREENSHOT_KILLED: &str = "target/test-artifacts/web-view-killed.png";
const SCREENSHOT: &str = "target/test-artifacts/web-view.png";

pub fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GOSSIPNET_CHROMIUM") {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// A pipe whose ends sit at fd 10 or above, so that putting them at fds 3
/// and 4 in the child cannot overwrite one with the other.
fn high_pipe() -> (OwnedFd, OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let lift = |fd: OwnedFd| -> OwnedFd {
        let high = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(10)).unwrap();
        // SAFETY: fcntl just returned this new descriptor; nothing else owns it.
        unsafe { std::os::fd::FromRawFd::from_raw_fd(high) }
    };
    (lift(read), lift(write))
}

/// Headless Chromium with one page, killed when dropped.
struct Browser {
    child: Child,
    commands: File,
    answers: mpsc::Receiver<Value>,
    session: String,
    next_id: u64,
    /// Chromium's profile, and its stderr.log.
    profile: tempfile::TempDir,
}

/// Launches of Chromium tried before the test gives up: on a loaded
/// 2-core machine a headless Chromium now and then never answers its
/// first command, and a fresh one does.
const LAUNCH_ATTEMPTS: usize = 3;

/// How long Chromium has to answer one command.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

impl Browser {
    /// A started Chromium, attached to its page.
    fn launch(chromium: &Path) -> Browser {
        let mut failures = Vec::new();
        for attempt in 1..=LAUNCH_ATTEMPTS {
            let mut browser = Browser::spawn(chromium);
            match browser.try_call("Target.getTargets", json!({})) {
                Ok(targets) => return browser.attach(&targets),
                Err(e) => {
                    failures.push(format!("attempt {attempt}: {e}; {}", browser.stderr_tail()));
                }
            }
        }
        panic!(
            "{} did not start in {LAUNCH_ATTEMPTS} attempts:\n{}",
            chromium.display(),
            failures.join("\n")
        );
    }

    fn spawn(chromium: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let stderr = File::create(profile.path().join("stderr.log")).unwrap();
        let (to_browser_read, to_browser_write) = high_pipe();
        let (from_browser_read, from_browser_write) = high_pipe();
        let (child_in, child_out) = (to_browser_read.as_raw_fd(), from_browser_write.as_raw_fd());
        let mut command = Command::new(chromium);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-pipe",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Its own group, so that its helper processes go with it.
            .process_group(0);
        // SAFETY: only dup2 runs between fork and exec; it is
        // async-signal-safe and the descriptors are open in the child.
        unsafe {
            command.pre_exec(move || {
                for (from, to) in [(child_in, 3), (child_out, 4)] {
                    let from = std::os::fd::BorrowedFd::borrow_raw(from);
                    let placed = nix::unistd::dup2_raw(from, to).map_err(std::io::Error::from)?;
                    std::mem::forget(placed);
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop((to_browser_read, from_browser_write));
        let (tx, answers) = mpsc::channel();
        let mut reader = BufReader::new(File::from(from_browser_read));
        std::thread::spawn(move || loop {
            let mut frame = Vec::new();
            match reader.read_until(0, &mut frame) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    frame.pop();
                    if let Ok(value) = serde_json::from_slice(&frame) {
                        if tx.send(value).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            commands: File::from(to_browser_write),
            answers,
            session: String::new(),
            next_id: 0,
            profile,
        }
    }

    /// The last lines Chromium wrote to its standard error.
    fn stderr_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.profile.path().join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "its stderr ends: {:?}",
            lines[lines.len().saturating_sub(5)..].join(" | ")
        )
    }

    /// Attaches to the page among `targets`, so later commands go to it.
    fn attach(mut self, targets: &Value) -> Browser {
        let page = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target")["targetId"]
            .clone();
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": page, "flatten": true }),
        );
        self.session = attached["sessionId"].as_str().unwrap().to_string();
        self
    }

    /// Sends one command (to the page once attached) and waits for its answer.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("{e}; {}", self.stderr_tail()))
    }

    /// Like [`Browser::call`], saying what went wrong instead of panicking.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut frame = serde_json::to_vec(&message).unwrap();
        frame.push(0);
        self.commands
            .write_all(&frame)
            .map_err(|e| format!("cannot send {method} to chromium: {e}"))?;
        let deadline = Instant::now() + ANSWER_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self.answers.recv_timeout(left).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => {
                    format!("no answer from chromium to {method} within {ANSWER_LIMIT:?}")
                }
                mpsc::RecvTimeoutError::Disconnected => {
                    format!("chromium closed its pipe before answering {method}")
                }
            })?;
            if answer["id"] == json!(id) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return Ok(answer["result"].clone());
            }
        }
    }

    fn eval(&mut self, script: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": script, "returnByValue": true }),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{script}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Evaluates `script` until it gives `true`; panics with `what` and
    /// the last value of `show` after `limit`.
    fn wait_until(&mut self, what: &str, limit: Duration, script: &str, show: &str) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.eval(script) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{what} not within {limit:?}; page shows: {}",
            self.eval(show)
        );
    }

    /// A real mouse click at the middle of the element `selector` names,
    /// once it has stopped moving (the graph's layout settles).
    fn click(&mut self, selector: &str) {
        let centre_of = format!(
            "(() => {{ const r = document.querySelector({selector:?}).getBoundingClientRect();
                       return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut centre = self.eval(&centre_of);
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.eval(&centre_of);
            let moved = (0..2)
                .map(|i| (now[i].as_f64().unwrap() - centre[i].as_f64().unwrap()).abs())
                .fold(0.0, f64::max);
            centre = now;
            if moved < 0.5 || Instant::now() > deadline {
                break;
            }
        }
        let (x, y) = (centre[0].as_f64().unwrap(), centre[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    fn screenshot(&mut self, path: &Path) {
        use base64_png::decode;
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = decode(shot["data"].as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Base64 as the DevTools protocol sends screenshots; a few lines rather
/// than a dependency.
pub mod base64_png {
    pub fn decode(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
        digits
            .chunks(4)
            .flat_map(|chunk| {
                let bits = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |acc, (i, d)| acc | u32::from(*d) << (18 - 6 * i));
                let bytes = bits.to_be_bytes();
                bytes[1..chunk.len()].to_vec()
            })
            .collect()
    }

    pub fn decodes_with_and_without_padding() {
        assert_eq!(decode("aGk="), b"hi");
        assert_eq!(decode("aGV5"), b"hey");
        assert_eq!(decode("aGVsbG8="), b"hello");
    }
}

pub fn clicking_kill_turns_a_peer_red_then_removes_it_from_the_graph(chromium: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let (mut up, mut lines) = common::start_up(
        dir.path(),
        &[
            "--seeds",
            "3",
            "--peers",
            "5",
            "--web",
            // Quick detection: a killed peer is removed within a few seconds.
            "--ping-interval",
            "1s",
            "--gossip-interval",
            "1s",
            "--gossip-count",
            "3",
        ],
        true,
    );
    let url_line = lines.wait_line("web view: http://", Duration::from_secs(30));
    let url = url_line.trim_start_matches("web view: ").trim().to_string();
    lines.wait_line("started peer-5", Duration::from_secs(60));

    let mut browser = Browser::launch(chromium);
    browser.call("Page.enable", json!({}));
    browser.call("Page.navigate", json!({ "url": url }));
    let nodes = "JSON.stringify([...document.querySelectorAll('g.node')].map(g => [g.dataset.name, g.dataset.state]))";
    // 1 and 2: the page loads and draws every node, all alive.
    browser.wait_until(
        "all 8 nodes drawn and alive",
        Duration::from_secs(20),
        "document.body?.dataset.ready === '1' && \
         document.querySelectorAll('g.node').length === 8 && \
         [...document.querySelectorAll('g.node')].every(g => g.dataset.state === 'alive')",
        nodes,
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('g.node[data-role=seed]').length"),
        json!(3)
    );
    // 3: select peer-2 and click Kill.
    browser.click("g.node[data-name='peer-2'] .shape");
    browser.wait_until(
        "the kill button enabled for peer-2",
        Duration::from_secs(5),
        "!document.querySelector('#kill').disabled",
        nodes,
    );
    browser.click("#kill");
    // 4: red at once, then gone once the removal commits.
    browser.wait_until(
        "peer-2 shown as removed",
        Duration::from_secs(10),
        "document.querySelector(\"g.node[data-name='peer-2']\")?.dataset.state === 'removed'",
        nodes,
    );
    let status = browser.eval("document.querySelector('#status-line').textContent");
    assert!(
        status.as_str().unwrap().contains("killed peer-2"),
        "{status}"
    );
    browser.screenshot(Path::new(SCREENSHOT_KILLED));
    browser.wait_until(
        "peer-2 gone from the graph after its removal committed",
        Duration::from_secs(30),
        "document.querySelector(\"g.node[data-name='peer-2']\") === null && \
         document.querySelectorAll('g.node').length === 7",
        nodes,
    );
    // 5: the page as it is now, for people to look at.
    browser.screenshot(Path::new(SCREENSHOT));
    assert!(std::fs::metadata(SCREENSHOT).unwrap().len() > 10_000);

    writeln!(up.0.stdin.as_mut().unwrap(), "exit").unwrap();
    lines.wait_line("stopped every node", Duration::from_secs(20));
}

/// One HTTP/1.1 request to `addr`, as a browser or an attacker's script
/// would send it: `host` and `headers` exactly as given. Returns the status
/// and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request += &format!("{name}: {value}\r\n");
    }
    request += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

pub fn the_web_api_refuses_cross_site_and_rebinding_requests_and_serves_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let (mut up, mut lines) =
        common::start_up(dir.path(), &["--seeds", "2", "--peers", "2", "--web"], true);
    let url_line = lines.wait_line("web view: http://", Duration::from_secs(30));
    let ours = url_line
        .trim_start_matches("web view: http://")
        .trim()
        .trim_end_matches('/')
        .to_string();
    let addr: SocketAddr = ours.parse().unwrap();
    lines.wait_line("started peer-2", Duration::from_secs(60));
    let origin = format!("http://{ours}");
    let evil_host = format!("evil.example:{}", addr.port());

    // The token, as the page gets it (checked before step 4, so that a
    // server without one fails at the attack it lets through).
    let (status, page) = http(addr, "GET", "/", &ours, &[], "");
    assert_eq!(status, 200, "{page}");
    let token = page
        .split(r#"<meta name="gossipnet-token" content=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string();
    let json_with_token = [
        ("Content-Type", "application/json"),
        ("X-Gossipnet-Token", token.as_str()),
    ];
    let kill = |who: &str| format!(r#"{{"command": "kill {who}"}}"#);
    // `kill WHO` as JSON with the token, from the page at `origin`.
    let kill_from = |origin: &str, who: &str| {
        let mut headers = json_with_token.to_vec();
        headers.push(("Origin", origin));
        http(addr, "POST", "/api/command", &ours, &headers, &kill(who))
    };

    // 1: a cross-site "simple" request: plain text, no token.
    let (status, body) = http(
        addr,
        "POST",
        "/api/command",
        &ours,
        &[
            ("Origin", "http://evil.example"),
            ("Content-Type", "text/plain"),
        ],
        "kill peer-1",
    );
    assert!(
        matches!(status, 403 | 415),
        "plain-text kill answered {status}: {body}"
    );
    // 2: a foreign Origin, even with the token and JSON.
    let (status, body) = kill_from("http://evil.example", "peer-1");
    assert_eq!(status, 403, "cross-origin kill: {body}");
    // 3: a DNS-rebinding name, on the page, the state and the command.
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/api/state"),
        ("POST", "/api/command"),
    ] {
        let evil_origin = format!("http://{evil_host}");
        let mut headers = json_with_token.to_vec();
        headers.push(("Origin", evil_origin.as_str()));
        let (status, body) = http(addr, method, path, &evil_host, &headers, &kill("peer-1"));
        assert_eq!(status, 421, "{method} {path} with Host {evil_host}: {body}");
        assert!(
            !body.contains(&token),
            "{method} {path} gave away the token"
        );
    }
    // 4: the page's own request works.
    assert_eq!(token.len(), 32, "the page's token: {token:?}");
    let (status, body) = kill_from(&origin, "peer-2");
    assert_eq!(status, 200, "same-origin kill: {body}");
    assert!(body.contains("killed peer-2"), "{body}");

    // The manager runs web commands in order, so none refused above ran
    // if `kill peer-2` is the first it echoed; and peer-1 still runs.
    let echoed = lines.wait_line("web> ", Duration::from_secs(10));
    assert_eq!(echoed, "web> kill peer-2");
    let states = || {
        let (_, state) = http(addr, "GET", "/api/state", &ours, &[], "");
        let state: Value = serde_json::from_str(&state).unwrap();
        let of = |name: &str| {
            state["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == name)
                .map_or(json!(null), |n| n["state"].clone())
        };
        (of("peer-1"), of("peer-2"))
    };
    common::wait_for(
        "the page's state to show peer-2 killed",
        Duration::from_secs(10),
        || (states().1 != json!("alive")).then_some(()),
        || format!("{:?}", states()),
    );
    assert_eq!(states().0, json!("alive"), "peer-1 was killed");

    writeln!(up.0.stdin.as_mut().unwrap(), "exit").unwrap();
    lines.wait_line("stopped every node", Duration::from_secs(20));
}
