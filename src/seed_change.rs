//! `gossipnet seeds add|remove|replace`: changing the seeds of a running
//! cluster.
//!
//! Like a rekey (src/rekey.rs), the change is an operator's order to
//! running seeds: a SEEDS_REQUEST signed with each receiving seed's *own*
//! identity key, read from its data directory, so only whoever can read
//! the data directories of a majority of the seeds can change the seeds.
//! Each seed checks the signature and proposes its `SeedChange` vote; when
//! a majority has voted, the change is approved in the log, and the
//! leader makes it with openraft's membership change: a new seed joins as
//! a learner and catches up (`add_learner`), then one `change_membership`
//! goes through joint consensus (every entry in between needs a majority
//! of the old seeds *and* of the new), so there are never two majorities.
//! This command waits until the new seed set is committed, printing each
//! step, and says how long it took.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    net::secure::NetworkKey,
    proto::{
        message::{Message, PROTOCOL_VERSION},
        seed::directory::SeedChange,
    },
    rekey::{seed_holding, send_order},
    status,
};

/// How long to wait, after the last vote, for the change to be made: a
/// new seed must catch up first.
const CHANGE_WAIT: Duration = Duration::from_secs(90);
/// How often the progress is polled.
const POLL: Duration = Duration::from_millis(100);

/// Why a seed change could not be ordered or made. Votes ordered before
/// the error stand.
#[derive(Debug, thiserror::Error)]
pub enum SeedChangeError {
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("no running seed of the config states the key {key} of {dir}/identity.key; start that seed, or give the data directory of a running seed")]
    NoSeedWithKey {
        dir: PathBuf,
        key: crate::proto::message::PublicKey,
    },
    #[error(transparent)]
    Status(#[from] status::StatusError),
    #[error("seed {voter} did not take the order: {reason}")]
    Refused { voter: SocketAddr, reason: String },
    #[error("the change was not made within {waited:?}: {state}. A majority of the seeds must vote (run this with the data directories of more seeds, on their hosts), and a new seed must be running, with the new seed list in its config, to catch up. Check with `gossipnet status --seed {voter} --format table`")]
    NotMade {
        waited: Duration,
        voter: SocketAddr,
        state: String,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// What `gossipnet seeds add|remove|replace` does: for each data
/// directory, the running seed whose key it holds votes for `change`;
/// then waits until the new seed set is committed. Returns the lines to
/// print, the last one with the time it took.
pub fn change_seeds(
    change: SeedChange,
    data_dirs: &[PathBuf],
    seeds: &[SocketAddr],
    network_key: Option<&NetworkKey>,
    mut progress: impl FnMut(&str),
) -> Result<(), SeedChangeError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SeedChangeError::Runtime)?;
    runtime.block_on(async {
        let started = Instant::now();
        let mut voters = Vec::new();
        let mut before: Option<BTreeSet<SocketAddr>> = None;
        for dir in data_dirs {
            let identity = crate::identity::load(dir)?;
            let voter = seed_holding(identity.public_key(), seeds, network_key)
                .await
                .ok_or_else(|| SeedChangeError::NoSeedWithKey {
                    dir: dir.clone(),
                    key: identity.public_key(),
                })?;
            if before.is_none() {
                let report = status::ask(voter, network_key).await?;
                before = Some(addrs(&report["seeds"]).into_iter().collect());
            }
            let order = Message::SeedsRequest {
                version: PROTOCOL_VERSION,
                add: change.add,
                remove: change.remove,
                signature: identity.order_seed_change(voter, change.add, change.remove),
            };
            let detail = send_order(voter, &order, network_key)
                .await
                .map_err(|reason| SeedChangeError::Refused { voter, reason })?;
            progress(&detail);
            voters.push(voter);
        }
        let Some(before) = before else {
            return Ok(());
        };
        let target = change.target(&before);
        let deadline = tokio::time::Instant::now() + CHANGE_WAIT;
        let mut said = BTreeSet::new();
        let mut last = String::from("no status yet");
        loop {
            // Any seed that stays will do; a removed one may be gone.
            for voter in voters.iter().filter(|v| target.contains(v)).chain(&voters) {
                let Ok(report) = status::ask(*voter, network_key).await else {
                    continue;
                };
                let sets: Vec<Vec<SocketAddr>> = report["voter_sets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(addrs)
                    .collect();
                let learners = addrs(&report["learners"]);
                let approved = !report["approved_seed_changes"]
                    .as_array()
                    .is_none_or(|a| a.is_empty());
                last = format!("voter sets {sets:?}, learners {learners:?}");
                let mut say = |key: &'static str, line: String| {
                    if said.insert(key) {
                        progress(&line);
                    }
                };
                if approved {
                    say("approved", format!("approved by a majority: {change}"));
                }
                if let Some(add) = change.add.filter(|a| learners.contains(a)) {
                    say(
                        "learner",
                        format!("{add} joined as a learner and is catching up"),
                    );
                }
                if sets.len() == 2 {
                    say(
                        "joint",
                        "joint consensus: entries now need a majority of the old seeds and of the new"
                            .into(),
                    );
                }
                if let [only] = sets.as_slice() {
                    let now: BTreeSet<SocketAddr> = only.iter().copied().collect();
                    if now == target {
                        let list = now.iter().map(|s| s.to_string()).collect::<Vec<_>>();
                        progress(&format!(
                            "done in {:.2} s: the seeds are now {}. List exactly these seeds in the config of every seed and peer{}",
                            started.elapsed().as_secs_f64(),
                            list.join(", "),
                            change
                                .remove
                                .map(|r| format!("; stop {r}, which no longer takes part"))
                                .unwrap_or_default()
                        ));
                        return Ok(());
                    }
                }
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SeedChangeError::NotMade {
                    waited: CHANGE_WAIT,
                    voter: voters[0],
                    state: last,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    })
}

fn addrs(value: &Value) -> Vec<SocketAddr> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.parse().ok())
        .collect()
}
