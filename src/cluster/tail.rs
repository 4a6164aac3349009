//! Reading an event stream file while its node is still writing it.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use crate::output::EventRecord;

/// Follows one JSON-lines file, returning each complete line once.
#[derive(Debug)]
pub struct EventTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl EventTail {
    pub fn new(path: impl AsRef<Path>) -> EventTail {
        EventTail {
            path: path.as_ref().to_path_buf(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records appended since the last call. A missing file is simply not
    /// written yet; a line that does not parse is skipped.
    pub fn poll(&mut self) -> io::Result<Vec<EventRecord>> {
        Ok(self
            .poll_lines()?
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect())
    }

    /// The complete lines appended since the last call, as one buffer of
    /// newline-terminated lines, for readers of other JSON-lines streams.
    pub fn poll_lines(&mut self) -> io::Result<Vec<u8>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut fresh = Vec::new();
        file.read_to_end(&mut fresh)?;
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        Ok(self.partial.drain(..=end).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn partial_lines_wait_for_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let mut tail = EventTail::new(&path);
        assert!(tail.poll().unwrap().is_empty(), "missing file is empty");
        let line = r#"{"ts_us":1,"node":"127.0.0.1:1","event":"shutdown"}"#;
        let mut f = File::create(&path).unwrap();
        f.write_all(&line.as_bytes()[..10]).unwrap();
        assert!(tail.poll().unwrap().is_empty());
        f.write_all(&line.as_bytes()[10..]).unwrap();
        f.write_all(b"\n").unwrap();
        assert_eq!(tail.poll().unwrap().len(), 1);
        assert!(tail.poll().unwrap().is_empty(), "a line came back twice");
    }
}
