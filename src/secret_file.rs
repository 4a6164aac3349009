//! 32-byte secrets on disk: the network key (`gossipnet keygen`) and a
//! peer's identity key. Each is a file of 64 hex digits and a newline,
//! readable by its owner only, and never written over.

use std::{io::Write, path::Path};

/// The secret in a file's bytes; surrounding whitespace is allowed. The
/// error says what is wrong, for a message that names the file.
pub fn parse(bytes: &[u8]) -> Result<[u8; 32], String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not text".to_string())?;
    let digits = text.trim();
    if digits.len() != 64 {
        return Err(format!("it holds {} characters, not 64", digits.len()));
    }
    let mut secret = [0; 32];
    hex::decode_to_slice(digits, &mut secret).map_err(|e| format!("it is not hex: {e}"))?;
    Ok(secret)
}

/// Writes `secret` to `path`, which must not exist (an `AlreadyExists`
/// error otherwise), with mode 0600 on Unix. A file cut short by a failed
/// write is removed, so that it is not taken for a malformed key later.
pub fn write_new(path: &Path, secret: &[u8; 32]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let written = file
        .write_all(format!("{}\n", hex::encode(secret)).as_bytes())
        .and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}
