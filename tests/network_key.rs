//! The optional authenticated transport (`--network-key`), with real
//! processes: members register and gossip; a node without the key, or with
//! another one, is refused at the handshake, and the refusal names its
//! address.

mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use common::{status, status_with, Cluster, Proc, RawClient, BIN, START};
use gossipnet::proto::{
    message::{Message, Role, PROTOCOL_VERSION},
    Event,
};

/// Runs `gossipnet keygen --out <dir>/<name>` and returns the file.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(name);
    let out = Command::new(BIN)
        .args(["keygen", "--out"])
        .arg(&file)
        .output()
        .expect("run gossipnet keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&file.display().to_string()));
    file
}

fn refusals(seed: &mut Proc) -> Vec<(std::net::SocketAddr, String)> {
    seed.poll()
        .events()
        .filter_map(|e| match e {
            Event::ConnectionRefused { remote, reason } => Some((*remote, reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn keygen_never_overwrites_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = keygen(dir.path(), "network.key");
    let before = std::fs::read_to_string(&file).unwrap();
    let out = Command::new(BIN)
        .args(["keygen", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
}

#[test]
fn members_with_the_key_gossip_and_nodes_without_it_are_refused() {
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "network.key");
    let other_key = keygen(keys.path(), "other.key");
    let key_arg = key.display().to_string();
    let mut net = Cluster::with_seed_args(
        3,
        &["--network-key", &key_arg],
        &["--network-key", &key_arg, "--gossip-count", "0"],
    );

    // Members: register, link, gossip, all over encrypted connections.
    net.add_peer();
    let typist = net.add_peer_with(&["--stdin"], true);
    writeln!(net.peers[typist].stdin(), "sealed hello").unwrap();
    net.peers[typist].stdin().flush().unwrap();
    net.peers[0].wait_event(
        "the typed message",
        START,
        |e| matches!(e, Event::GossipReceived { msg, .. } if msg.ends_with(":sealed hello")),
    );

    // Status needs the key too.
    let seed = net.seeds[0].addr();
    assert!(status(seed).is_none(), "status answered without the key");
    let committed = status_with(seed, &["--network-key", &key_arg]).expect("status with the key");
    assert_eq!(
        committed["peers"].as_array().map(Vec::len),
        Some(2),
        "{committed}"
    );

    // Outsiders: a peer without a key and one with another key.
    let config = net.config.display().to_string();
    let mut outsiders: Vec<Proc> = [None, Some(&other_key)]
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            let mut args: Vec<String> = ["peer", "127.0.0.1:0", "--config", &config]
                .map(String::from)
                .to_vec();
            if let Some(key) = key {
                args.extend(["--network-key".into(), key.display().to_string()]);
            }
            Proc::spawn(net.dir.path(), &format!("outsider-{i}"), &args, false)
        })
        .collect();
    let refused = common::wait_for(
        "each seed to refuse both outsiders",
        START,
        || {
            let refused: Vec<_> = net.seeds.iter_mut().map(refusals).collect();
            let both = |r: &Vec<(_, String)>| {
                r.iter().any(|(_, why)| why.contains("without a handshake"))
                    && r.iter().any(|(_, why)| why.contains("does not hold"))
            };
            refused.iter().all(both).then_some(refused)
        },
        || "the seeds' connection_refused events (see their event files)".into(),
    );
    for r in refused.iter().flatten() {
        assert!(r.0.ip().is_loopback(), "refusal names {}", r.0);
    }
    for outsider in &mut outsiders {
        outsider.poll();
        let registered = outsider.count(|e| matches!(e, Event::Registered { .. }));
        assert_eq!(registered, 0, "{} registered", outsider.name);
    }
    let committed = status_with(seed, &["--network-key", &key_arg]).unwrap();
    assert_eq!(
        committed["peers"].as_array().map(Vec::len),
        Some(2),
        "{committed}"
    );

    // A hand-made plaintext client: refused at its first frame, and the
    // refusal names its exact socket address.
    let member = net.peers[0].addr();
    let mut client = RawClient::connect(member);
    let client_addr = client.stream.local_addr().unwrap();
    client.send(&Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Peer,
        listen: "127.0.0.1:9".parse().unwrap(),
        challenge: None,
    });
    client.send(&Message::gossip_signed_by(
        &gossipnet::proto::evidence::Identity::from_secret([9; 32]),
        "127.0.0.1:9".parse().unwrap(),
        "forged",
        0,
    ));
    assert!(
        client.closed_by_node(),
        "the member kept a plaintext client"
    );
    net.peers[0].wait_event(
        "the plaintext client's refusal",
        START,
        |e| matches!(e, Event::ConnectionRefused { remote, .. } if *remote == client_addr),
    );
    let forged =
        net.peers[0].count(|e| matches!(e, Event::GossipReceived { msg, .. } if msg == "forged"));
    assert_eq!(forged, 0);
}
