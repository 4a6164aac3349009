//! The benchmark's comparison peer: a rust-libp2p gossipsub node, run side
//! by side with gossipnet on loopback (benches/compare.rs).
//!
//! It uses gossipsub with its default parameters (`gossipsub::Config::default()`,
//! signed messages) over TCP + noise + yamux, on one thread like a gossipnet
//! peer. It subscribes to the topic `bench`, listens on `--listen`, dials every
//! `--dial` address, prints `listening <multiaddr>/p2p/<peer id>` on stdout for
//! the harness, and publishes each non-empty stdin line as one message.
//!
//! `--events FILE` receives JSON lines in the envelope of gossipnet's event
//! stream, `{"ts_us": <unix µs>, "node": "<ip:port>", "event": "<name>", ...}`:
//! `listening`; `joined {mesh}` the first time the topic mesh is non-empty;
//! `gossip_created {msg}`; `gossip_received {msg, from, origin}` (first receipt:
//! gossipsub de-duplicates); `publish_failed {msg, reason}`; at shutdown (stdin
//! EOF, SIGTERM, SIGINT) `traffic {bytes_sent, bytes_received, gossip_sent}` and
//! then `shutdown`. `gossip_sent` counts data messages handed to a peer
//! (published or forwarded, once per destination).

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _};
use clap::Parser;
use libp2p::{
    futures::StreamExt, gossipsub, identity, multiaddr::Protocol, noise, swarm::SwarmEvent, tcp,
    yamux, Multiaddr, SwarmBuilder, TransportError,
};
use prometheus_client::{encoding::text::encode, registry::Registry};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    signal::unix::{signal, SignalKind},
    time::MissedTickBehavior,
};

#[derive(Parser)]
#[command(about = "rust-libp2p gossipsub peer for the gossipnet comparison benchmark")]
struct Args {
    /// JSONL event file (truncated at start).
    #[arg(long)]
    events: PathBuf,
    /// Listen address, a multiaddr or ip:port.
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0", value_parser = parse_listen)]
    listen: Multiaddr,
    /// Peer to dial, a multiaddr ending in /p2p/<peer id>. Repeatable.
    #[arg(long)]
    dial: Vec<Multiaddr>,
}

fn parse_listen(s: &str) -> Result<Multiaddr, String> {
    if s.starts_with('/') {
        return s.parse().map_err(|e| format!("{e}"));
    }
    let addr: SocketAddr = s
        .parse()
        .map_err(|e| format!("neither a multiaddr nor ip:port: {e}"))?;
    Ok(Multiaddr::from(addr.ip()).with(Protocol::Tcp(addr.port())))
}

fn main() -> ExitCode {
    // Clap exits with 2 on bad arguments by itself.
    let args = Args::parse();
    // One thread, as a gossipnet peer has, so that the comparison is fair.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
        .and_then(|rt| {
            let result = rt.block_on(run(args));
            // Tokio reads stdin on a blocking thread, which a plain drop of
            // the runtime waits for: after SIGTERM, stdin may never close.
            rt.shutdown_background();
            result
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gossipsub-peer: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The event file. `node` is known only once listening, and nothing is
/// written before that.
struct Events {
    out: BufWriter<File>,
    node: String,
    dirty: bool,
}

impl Events {
    fn emit(&mut self, event: &str, fields: &[(&str, Value)]) -> anyhow::Result<()> {
        let ts_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        // Built by hand so that the envelope keys come first, as in
        // gossipnet's stream (serde_json's Map would sort them).
        let mut line = format!(
            "{{\"ts_us\":{ts_us},\"node\":{},\"event\":{}",
            json!(self.node),
            json!(event)
        );
        for (key, value) in fields {
            line += &format!(",{}:{value}", json!(key));
        }
        line += "}\n";
        self.out
            .write_all(line.as_bytes())
            .context("cannot write the events file")?;
        self.dirty = true;
        Ok(())
    }

    /// The harness tails the file while the node runs.
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.dirty {
            self.out.flush().context("cannot write the events file")?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// `/ip4/127.0.0.1/tcp/41234` → `127.0.0.1:41234`, the form gossipnet uses.
fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip = None;
    for protocol in addr {
        match protocol {
            Protocol::Ip4(a) => ip = Some(a.into()),
            Protocol::Ip6(a) => ip = Some(a.into()),
            Protocol::Tcp(port) => return ip.map(|ip| SocketAddr::new(ip, port)),
            _ => {}
        }
    }
    None
}

/// Bytes sent, bytes received, and gossip data messages sent, read from the
/// text encoding of the metrics registry (the counters are not readable
/// otherwise).
fn traffic(registry: &Registry) -> anyhow::Result<(u64, u64, u64)> {
    let mut text = String::new();
    encode(&mut text, registry).context("cannot encode the metrics")?;
    let (mut sent, mut received, mut gossip) = (0, 0, 0);
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        // Summed over all label sets: every transport protocol stack, and
        // every topic (there is one).
        if name.starts_with("libp2p_bandwidth_bytes_total{") {
            if name.contains("direction=\"Outbound\"") {
                sent += value;
            } else if name.contains("direction=\"Inbound\"") {
                received += value;
            }
        } else if name.starts_with("gossipsub_topic_msg_sent_counts_total{") {
            gossip += value;
        }
    }
    Ok((sent, received, gossip))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let file = File::create(&args.events)
        .with_context(|| format!("cannot create the events file {}", args.events.display()))?;
    let mut events = Events {
        out: BufWriter::new(file),
        node: String::new(),
        dirty: false,
    };

    let keypair = identity::Keypair::generate_ed25519();
    let mut registry = Registry::default();
    let behaviour: gossipsub::Behaviour = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(keypair.clone()),
        gossipsub::Config::default(),
    )
    .map_err(anyhow::Error::msg)
    .context("cannot create the gossipsub behaviour")?
    .with_metrics(
        registry.sub_registry_with_prefix("gossipsub"),
        gossipsub::MetricsConfig::default(),
    );
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .context("cannot set up the TCP transport")?
        .with_bandwidth_metrics(&mut registry)
        .with_behaviour(|_| behaviour)
        .context("cannot set up the behaviour")?
        // Gossipsub keeps only mesh connections alive; with the default 10 s
        // the others would close between messages.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();

    let topic = gossipsub::IdentTopic::new("bench");
    let topic_hash = topic.hash();
    swarm
        .behaviour_mut()
        .subscribe(&topic)
        .context("cannot subscribe to the topic")?;

    if let Err(e) = swarm.listen_on(args.listen.clone()) {
        // Display the OS error alone: `Other`'s own Display repeats it.
        let reason = match e {
            TransportError::Other(e) => e.to_string(),
            e => e.to_string(),
        };
        bail!("cannot listen on {}: {reason}", args.listen);
    }
    let listen_addr = loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => break address,
            SwarmEvent::ListenerClosed { reason: Err(e), .. }
            | SwarmEvent::ListenerError { error: e, .. } => {
                bail!("cannot listen on {}: {e}", args.listen)
            }
            _ => {}
        }
    };
    let mut stdout = io::stdout().lock();
    writeln!(
        stdout,
        "listening {listen_addr}/p2p/{}",
        swarm.local_peer_id()
    )
    .and_then(|()| stdout.flush())
    .context("cannot write to stdout")?;
    drop(stdout);
    events.node =
        socket_addr(&listen_addr).map_or_else(|| listen_addr.to_string(), |a| a.to_string());
    events.emit("listening", &[])?;
    events.flush()?;

    for addr in args.dial {
        swarm
            .dial(addr.clone())
            .with_context(|| format!("cannot dial {addr}"))?;
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut joined = false;

    loop {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(gossipsub::Event::Message {
                    propagation_source,
                    message,
                    ..
                }) => events.emit(
                    "gossip_received",
                    &[
                        ("msg", json!(String::from_utf8_lossy(&message.data))),
                        ("from", json!(propagation_source.to_string())),
                        (
                            "origin",
                            json!(message.source.map(|p| p.to_string()).unwrap_or_default()),
                        ),
                    ],
                )?,
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    eprintln!("gossipsub-peer: dial failed: {error}");
                }
                _ => {}
            },
            line = stdin.next_line() => match line {
                Ok(Some(line)) => {
                    let msg = line.trim();
                    if !msg.is_empty() {
                        events.emit("gossip_created", &[("msg", json!(msg))])?;
                        let published = swarm.behaviour_mut().publish(topic.clone(), msg.as_bytes());
                        if let Err(e) = published {
                            events.emit(
                                "publish_failed",
                                &[("msg", json!(msg)), ("reason", json!(e.to_string()))],
                            )?;
                        }
                    }
                }
                // The invalid line has been consumed; carry on with the next.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    eprintln!("gossipsub-peer: skipped a stdin line: {e}");
                }
                Ok(None) | Err(_) => break,
            },
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            // Heartbeats change the mesh without a swarm event, so the mesh is
            // also checked here.
            _ = tick.tick() => {}
        }
        if !joined {
            let mesh = swarm.behaviour().mesh_peers(&topic_hash).count();
            if mesh > 0 {
                joined = true;
                events.emit("joined", &[("mesh", json!(mesh))])?;
            }
        }
        events.flush()?;
    }

    let (bytes_sent, bytes_received, gossip_sent) = traffic(&registry)?;
    events.emit(
        "traffic",
        &[
            ("bytes_sent", json!(bytes_sent)),
            ("bytes_received", json!(bytes_received)),
            ("gossip_sent", json!(gossip_sent)),
        ],
    )?;
    events.emit("shutdown", &[])?;
    events.flush()?;
    Ok(())
}
