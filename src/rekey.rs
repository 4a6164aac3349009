//! `gossipnet seeds rekey`: replacing a seed's pinned identity key.
//!
//! Every seed's key is pinned in the seeds' log when the cluster forms
//! (docs/SECURITY.md, "Seed keys"), and every seed refuses a node that
//! claims a seed with another key. A seed whose data directory is lost
//! comes back with a new `identity.key` and is refused too, until a
//! majority of seeds vote to pin its new key.
//!
//! Each vote is an operator's order to one running seed: a REKEY_REQUEST
//! signed with that seed's *own* identity key, read from its data
//! directory. So whoever orders a vote must be able to read the data
//! directory of that seed (mode 0600), and a process that merely runs on
//! the same host cannot: it can neither sign for a seed nor pass for one.
//! The seed checks the signature against its own key, and that the key
//! to replace is the one pinned, then proposes its `Rekey` vote; the key
//! is replaced when a majority of seeds have voted for the same one.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use crate::{
    net::{conn, secure::NetworkKey},
    proto::{
        message::{Message, PublicKey, PROTOCOL_VERSION},
        QueryError,
    },
    status,
};

/// How long to wait, after the last vote, for the new key to be committed.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// Why a rekey could not be ordered. Votes ordered before the error stand.
#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("no running seed of the config states the key {key} of {dir}/identity.key; start that seed, or give the data directory of a running seed")]
    NoSeedWithKey { dir: PathBuf, key: PublicKey },
    #[error(transparent)]
    Status(#[from] status::StatusError),
    #[error("seed {voter} knows no key pinned for {seed}; nothing to replace (is {seed} a seed of this cluster, and has the cluster formed?)")]
    NothingPinned { voter: SocketAddr, seed: SocketAddr },
    #[error("seed {voter} did not take the order: {reason}")]
    Refused { voter: SocketAddr, reason: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// What `gossipnet seeds rekey` does: for each data directory, the
/// running seed whose key it holds votes to pin `new` for `seed`; then
/// waits a little for the key to be committed. Returns the lines to print.
pub fn rekey(
    seed: SocketAddr,
    new: PublicKey,
    data_dirs: &[PathBuf],
    seeds: &[SocketAddr],
    network_key: Option<&NetworkKey>,
) -> Result<Vec<String>, RekeyError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RekeyError::Runtime)?;
    runtime.block_on(async {
        let mut lines = Vec::new();
        let mut last_voter = None;
        for dir in data_dirs {
            let identity = crate::identity::load(dir)?;
            let voter = seed_holding(identity.public_key(), seeds, network_key)
                .await
                .ok_or_else(|| RekeyError::NoSeedWithKey {
                    dir: dir.clone(),
                    key: identity.public_key(),
                })?;
            let old = pinned_key(voter, seed, network_key)
                .await?
                .ok_or(RekeyError::NothingPinned { voter, seed })?;
            if old == new {
                lines.push(format!("{new} is already the key pinned for {seed}"));
                return Ok(lines);
            }
            let order = Message::RekeyRequest {
                version: PROTOCOL_VERSION,
                seed,
                old,
                new,
                signature: identity.order_rekey(voter, seed, old, new),
            };
            let detail = send_order(voter, &order, network_key)
                .await
                .map_err(|reason| RekeyError::Refused { voter, reason })?;
            lines.push(detail);
            last_voter = Some(voter);
        }
        let Some(voter) = last_voter else {
            return Ok(lines);
        };
        let deadline = tokio::time::Instant::now() + COMMIT_WAIT;
        loop {
            if pinned_key(voter, seed, network_key).await? == Some(new) {
                lines.push(format!(
                    "committed: the seeds now require key {new} of {seed}"
                ));
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                lines.push(format!(
                    "not committed yet: a majority of the {} seeds must vote; run this with the data directories of more seeds (on their hosts), then check with `gossipnet status --seed {voter} --format table`",
                    seeds.len()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(lines)
    })
}

/// Sends an operator's signed `order` (REKEY_REQUEST or SEEDS_REQUEST) to
/// the seed at `voter`: its reply's detail if it accepted the order, or why
/// not.
pub(crate) async fn send_order(
    voter: SocketAddr,
    order: &Message,
    network_key: Option<&NetworkKey>,
) -> Result<String, String> {
    let expected = match order {
        Message::SeedsRequest { .. } => "SEEDS_REPLY",
        _ => "REKEY_REPLY",
    };
    let reply = conn::query(
        voter,
        order,
        conn::CONNECT_TIMEOUT,
        network_key,
        &Default::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let kind = reply.kind();
    match reply {
        Message::RekeyReply { accepted, detail } | Message::SeedsReply { accepted, detail }
            if kind == expected =>
        {
            if accepted {
                Ok(detail)
            } else {
                Err(detail)
            }
        }
        _ => Err(format!("{kind} instead of {expected}")),
    }
}

/// The seed of `seeds` whose PROBE_REPLY states `key`.
pub(crate) async fn seed_holding(
    key: PublicKey,
    seeds: &[SocketAddr],
    network_key: Option<&NetworkKey>,
) -> Option<SocketAddr> {
    for seed in seeds {
        let probe = Message::Probe {
            version: PROTOCOL_VERSION,
            nonce: rand::random(),
        };
        let answer: Result<Message, QueryError> = conn::query(
            *seed,
            &probe,
            conn::CONNECT_TIMEOUT,
            network_key,
            &Default::default(),
        )
        .await;
        if let Ok(Message::ProbeReply { key: Some(k), .. }) = answer {
            if k == key {
                return Some(*seed);
            }
        }
    }
    None
}

/// The key `voter`'s committed directory pins for `seed`.
async fn pinned_key(
    voter: SocketAddr,
    seed: SocketAddr,
    network_key: Option<&NetworkKey>,
) -> Result<Option<PublicKey>, RekeyError> {
    let report = status::ask(voter, network_key).await?;
    Ok(report["seed_keys"][seed.to_string()]
        .as_str()
        .and_then(|k| k.parse().ok()))
}
