//! Where events go: a prose line on the console and in the output file
//! (R17, R18), and a JSON line in the event stream (R19, docs/EVENTS.md).

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::proto::{Event, Timestamp};

/// One line of the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Unix time in microseconds.
    pub ts_us: u64,
    /// The node that logged it, "ip:port".
    pub node: SocketAddr,
    #[serde(flatten)]
    pub event: Event,
}

/// A problem opening an output file; the node does not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot create {path}: {source}; check that the directory exists and is writable")]
pub struct OutputError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// Appends, so that a restarted node adds to its history instead of
/// wiping it.
fn create(path: &Path) -> Result<BufWriter<File>, OutputError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(BufWriter::new)
        .map_err(|source| OutputError {
            path: path.to_path_buf(),
            source,
        })
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-21T15:20:01.123456Z`.
pub fn format_timestamp(ts: Timestamp) -> String {
    let time = UNIX_EPOCH + Duration::from_micros(ts.as_micros());
    humantime::format_rfc3339_micros(time).to_string()
}

pub struct LogSink {
    node: SocketAddr,
    console: bool,
    output: BufWriter<File>,
    events: Option<BufWriter<File>>,
    /// Set after the first failed write, so a full disk is reported once
    /// rather than on every event.
    write_failed: bool,
}

impl LogSink {
    pub fn open(
        node: SocketAddr,
        output: &Path,
        events: Option<&Path>,
        console: bool,
    ) -> Result<LogSink, OutputError> {
        Ok(LogSink {
            node,
            console,
            output: create(output)?,
            events: events.map(create).transpose()?,
            write_failed: false,
        })
    }

    pub fn emit(&mut self, ts: Timestamp, event: &Event) {
        let line = format!("{} {}", format_timestamp(ts), event);
        if self.console {
            // A closed or full stdout (`| head`) must not stop the node.
            let _ = writeln!(io::stdout().lock(), "{line}");
        }
        let record = EventRecord {
            ts_us: ts.as_micros(),
            node: self.node,
            event: event.clone(),
        };
        let result = writeln!(self.output, "{line}").and_then(|()| match &mut self.events {
            Some(events) => {
                serde_json::to_writer(&mut *events, &record)?;
                events.write_all(b"\n")
            }
            None => Ok(()),
        });
        self.note(result);
    }

    /// Pushes buffered lines to disk so that readers of the files see them.
    pub fn flush(&mut self) {
        let result = self.output.flush().and_then(|()| match &mut self.events {
            Some(events) => events.flush(),
            None => Ok(()),
        });
        self.note(result);
    }

    fn note(&mut self, result: io::Result<()>) {
        if let Err(e) = result {
            if !self.write_failed {
                self.write_failed = true;
                eprintln!("gossipnet {}: writing output files failed: {e}", self.node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_records_have_the_documented_envelope() {
        let record = EventRecord {
            ts_us: 1_740_466_800_123_456,
            node: "127.0.0.1:6001".parse().unwrap(),
            event: Event::GossipCreated {
                msg: "1740466800.123456:127.0.0.1:1".into(),
            },
        };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            json,
            r#"{"ts_us":1740466800123456,"node":"127.0.0.1:6001","event":"gossip_created","msg":"1740466800.123456:127.0.0.1:1"}"#
        );
        let back: EventRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn timestamps_have_microseconds() {
        assert_eq!(
            format_timestamp(Timestamp(1_740_466_800_123_456)),
            "2025-02-25T07:00:00.123456Z"
        );
    }

    #[test]
    fn lines_reach_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.txt");
        let ev = dir.path().join("ev.jsonl");
        let node = "127.0.0.1:6001".parse().unwrap();
        let mut sink = LogSink::open(node, &out, Some(&ev), false).unwrap();
        sink.emit(Timestamp(1_000_000), &Event::Shutdown);
        sink.flush();
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text, "1970-01-01T00:00:01.000000Z Shutting down.\n");
        let json = std::fs::read_to_string(&ev).unwrap();
        assert!(json.contains(r#""event":"shutdown""#), "{json}");
    }
}
