//! `gossipnet status`: a seed cluster's committed state, for tools and people.

use std::{fmt::Write, net::SocketAddr};

use serde_json::{json, Value};

use crate::{
    net::{conn, secure::NetworkKey},
    proto::message::Message,
};

/// Why no status could be had.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot get status from {seed}: {reason}; is a seed running there?")]
    Unreachable { seed: SocketAddr, reason: String },
    #[error("{seed} answered: {reason}")]
    Refused { seed: SocketAddr, reason: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Asks `seed` alone for its status.
pub async fn ask(seed: SocketAddr, key: Option<&NetworkKey>) -> Result<Value, StatusError> {
    match conn::query(
        seed,
        &Message::StatusRequest {},
        conn::CONNECT_TIMEOUT,
        key,
        &Default::default(),
    )
    .await
    {
        Ok(Message::StatusReply { status }) => match status.get("error") {
            Some(reason) => Err(StatusError::Refused {
                seed,
                reason: reason.as_str().unwrap_or_default().to_string(),
            }),
            None => Ok(status),
        },
        Ok(other) => Err(StatusError::Refused {
            seed,
            reason: format!("{} instead of STATUS_REPLY", other.kind()),
        }),
        Err(e) => Err(StatusError::Unreachable {
            seed,
            reason: e.to_string(),
        }),
    }
}

/// Asks `seed` for the committed directory, then every seed it names for
/// its own commit index. Seeds that do not answer show `null`.
pub fn fetch(seed: SocketAddr, key: Option<&NetworkKey>) -> Result<Value, StatusError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StatusError::Runtime)?;
    runtime.block_on(async {
        let mut report = ask(seed, key).await?;
        let seeds: Vec<String> = report["seeds"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut indexes = serde_json::Map::new();
        for other in seeds {
            let index = match other.parse::<SocketAddr>() {
                Ok(addr) => ask(addr, key).await.ok().map(|s| s["commit_index"].clone()),
                Err(_) => None,
            };
            indexes.insert(other, index.unwrap_or(Value::Null));
        }
        report["commit_index"] = json!(indexes);
        Ok(report)
    })
}

/// The status as aligned text.
pub fn table(report: &Value) -> String {
    let mut out = String::new();
    let text = |v: &Value| {
        v.as_str()
            .map(String::from)
            .unwrap_or_else(|| "none".into())
    };
    let _ = writeln!(out, "asked seed: {}", text(&report["seed"]));
    let _ = writeln!(out, "leader:     {}", text(&report["leader"]));
    let _ = writeln!(out, "term:       {}", report["term"]);
    let _ = writeln!(out, "\n{:<24} commit index", "seed");
    if let Some(indexes) = report["commit_index"].as_object() {
        for (seed, index) in indexes {
            let index = if index.is_null() {
                "unreachable".to_string()
            } else {
                index.to_string()
            };
            let _ = writeln!(out, "{seed:<24} {index}");
        }
    }
    let peers = report["peers"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "\n{} peers", peers.len());
    let _ = writeln!(out, "{:<24} {:>8} incarnation", "peer", "degree");
    let edges = report["topology"].as_array().cloned().unwrap_or_default();
    for p in &peers {
        let addr = p["addr"].as_str().unwrap_or_default();
        let degree = edges
            .iter()
            .filter(|e| e[0].as_str() == Some(addr) || e[1].as_str() == Some(addr))
            .count();
        let _ = writeln!(out, "{addr:<24} {degree:>8} {}", p["incarnation"]);
    }
    if let Some(keys) = report["seed_keys"].as_object() {
        let _ = writeln!(out, "\n{} seed keys pinned", keys.len());
        for (seed, key) in keys {
            let _ = writeln!(out, "{seed:<24} {}", text(key));
        }
    }
    let _ = writeln!(out, "\n{} links", edges.len());
    for e in &edges {
        let _ = writeln!(out, "{} -- {}", text(&e[0]), text(&e[1]));
    }
    out
}
