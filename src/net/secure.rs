//! The optional authenticated, encrypted transport (`--network-key`).
//!
//! Every node of a network that uses it holds the same 32-byte pre-shared
//! key. Each connection starts with a Noise `NNpsk0` handshake mixing that
//! key in, so a node without it fails at the first handshake message and
//! never gets to say HELLO, register, gossip or report. After the
//! handshake, every frame body is sealed with ChaCha20-Poly1305 under keys
//! fresh to the connection: a recorded frame cannot be replayed, on this
//! connection or any other, and a changed one fails to open.
//!
//! Off by default, so that a course setup without keys keeps working.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use rand::RngCore;

use crate::secret_file;

/// The handshake: no static keys (the pre-shared key is the credential),
/// fresh ephemeral keys on both sides, the PSK mixed in before the first
/// message so the responder can refuse a wrong key at once.
const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// Bound into the handshake hash, so a key made for something else, or a
/// later incompatible version of this transport, fails the handshake.
const PROLOGUE: &[u8] = b"gossipnet transport v1";

/// Longest Noise message; longer frames are sealed in pieces.
const NOISE_MAX_MESSAGE: usize = 65_535;
const NOISE_TAG: usize = 16;
/// Plaintext that fits in one Noise message.
const PIECE: usize = NOISE_MAX_MESSAGE - NOISE_TAG;

/// The bytes sealing adds to a frame body of `len` bytes: per piece of at
/// most [`PIECE`] bytes, a 2-byte length and the 16-byte tag.
pub fn sealed_len(len: usize) -> usize {
    let pieces = len.div_ceil(PIECE).max(1);
    len + pieces * (2 + NOISE_TAG)
}

/// The network's pre-shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkKey([u8; 32]);

impl fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, not even in a debug dump.
        f.write_str("NetworkKey(..)")
    }
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: cannot read the network key: {source}; check the path, or create a key with `gossipnet keygen --out {}`", path.display(), path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:1: {problem}; a network key file holds 64 hex digits, as `gossipnet keygen` writes it", path.display())]
    Malformed { path: PathBuf, problem: String },
    #[error("{} already exists; keep it (every node needs the same key), or remove it first to make a new one", path.display())]
    Exists { path: PathBuf },
    #[error("{}: cannot write the network key: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl NetworkKey {
    /// A new random key.
    pub fn generate() -> NetworkKey {
        let mut key = [0; 32];
        rand::rng().fill_bytes(&mut key);
        NetworkKey(key)
    }

    /// Reads a key file: 64 hex digits, surrounding whitespace allowed.
    pub fn load(path: &Path) -> Result<NetworkKey, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        secret_file::parse(&bytes)
            .map(NetworkKey)
            .map_err(|problem| KeyError::Malformed {
                path: path.to_path_buf(),
                problem,
            })
    }

    /// Writes a new random key to `path`, readable by its owner only, and
    /// never over an existing file: replacing a network's key by accident
    /// would cut this node off from all the others.
    pub fn create(path: &Path) -> Result<NetworkKey, KeyError> {
        let key = NetworkKey::generate();
        secret_file::write_new(path, &key.0).map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists {
                path: path.to_path_buf(),
            },
            _ => KeyError::Write {
                path: path.to_path_buf(),
                source,
            },
        })?;
        Ok(key)
    }

    fn builder(&self) -> snow::Builder<'_> {
        let params = NOISE_PARAMS.parse().expect("valid Noise parameters");
        snow::Builder::new(params)
            .prologue(PROLOGUE)
            .psk(0, &self.0)
    }

    /// The dialling side's handshake.
    pub fn initiator(&self) -> Handshake {
        Handshake(
            self.builder()
                .build_initiator()
                .expect("Noise initiator from valid parameters"),
        )
    }

    /// The accepting side's handshake.
    pub fn responder(&self) -> Handshake {
        Handshake(
            self.builder()
                .build_responder()
                .expect("Noise responder from valid parameters"),
        )
    }
}

/// One side of a handshake in progress: two messages, initiator first.
pub struct Handshake(snow::HandshakeState);

impl Handshake {
    /// The next handshake message to send.
    pub fn write(&mut self) -> Result<Vec<u8>, String> {
        let mut buf = vec![0; NOISE_MAX_MESSAGE];
        let len = self
            .0
            .write_message(&[], &mut buf)
            .map_err(|e| format!("handshake: {e}"))?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Takes the remote's handshake message; fails when the remote does
    /// not hold this network's key.
    pub fn read(&mut self, message: &[u8]) -> Result<(), String> {
        let mut payload = vec![0; NOISE_MAX_MESSAGE];
        self.0
            .read_message(message, &mut payload)
            .map(drop)
            .map_err(|_| describe_bad_handshake(message))
    }

    /// The keys for the rest of the connection.
    pub fn finish(self) -> Result<Cipher, String> {
        self.0
            .into_transport_mode()
            .map(Cipher)
            .map_err(|e| format!("handshake not finished: {e}"))
    }
}

fn describe_bad_handshake(message: &[u8]) -> String {
    if message.starts_with(b"{") {
        let kind = crate::proto::message::Message::from_json(message)
            .map(|m| m.kind())
            .unwrap_or("a plaintext frame");
        format!("it sent {kind} without a handshake: it runs without this network's key (--network-key)")
    } else {
        "the handshake failed: it does not hold this network's key".into()
    }
}

/// Seals and opens the frames of one connection.
pub struct Cipher(snow::TransportState);

impl Cipher {
    /// The sealed form of a frame body: each piece of up to [`PIECE`]
    /// bytes as a 2-byte big-endian length and its Noise message.
    pub fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut sealed = Vec::with_capacity(sealed_len(plain.len()));
        // An empty body is still one piece, so that the frame is not empty.
        let empty: &[u8] = &[];
        let pieces = plain.chunks(PIECE).chain(plain.is_empty().then_some(empty));
        for piece in pieces {
            // Each piece is sealed in place, after room for its length.
            let at = sealed.len();
            sealed.resize(at + 2 + piece.len() + NOISE_TAG, 0);
            let len = self
                .0
                .write_message(piece, &mut sealed[at + 2..])
                .expect("a piece within the Noise message limit seals");
            sealed.truncate(at + 2 + len);
            sealed[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
        }
        sealed
    }

    /// The frame body inside a sealed frame, or why it is not one this
    /// connection's remote sealed (tampered, replayed, truncated).
    pub fn open(&mut self, mut sealed: &[u8]) -> Result<Vec<u8>, String> {
        let mut plain = Vec::with_capacity(sealed.len());
        if sealed.is_empty() {
            return Err("an empty sealed frame".into());
        }
        while !sealed.is_empty() {
            let Some((len, rest)) = sealed.split_first_chunk::<2>() else {
                return Err("a sealed frame cut inside a piece's length".into());
            };
            let len = u16::from_be_bytes(*len) as usize;
            if rest.len() < len {
                return Err("a sealed frame shorter than its piece".into());
            }
            let (piece, rest) = rest.split_at(len);
            // Opened in place: a piece's plaintext is shorter than it.
            let at = plain.len();
            plain.resize(at + piece.len(), 0);
            let n = self.0.read_message(piece, &mut plain[at..]).map_err(|_| {
                "a frame that does not open with this connection's keys (altered or replayed)"
                    .to_string()
            })?;
            plain.truncate(at + n);
            sealed = rest;
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the two-message handshake between two keys' holders.
    fn handshake(a: &NetworkKey, b: &NetworkKey) -> Result<(Cipher, Cipher), String> {
        let (mut initiator, mut responder) = (a.initiator(), b.responder());
        responder.read(&initiator.write()?)?;
        initiator.read(&responder.write()?)?;
        Ok((initiator.finish()?, responder.finish()?))
    }

    #[test]
    fn holders_of_the_same_key_exchange_frames_both_ways() {
        let key = NetworkKey::generate();
        let (mut a, mut b) = handshake(&key, &key).unwrap();
        let big = vec![7u8; 3 * PIECE + 5];
        for body in [&b"{\"type\":\"PING\",\"nonce\":1}"[..], &[], &big] {
            let sealed = a.seal(body);
            assert_eq!(sealed.len(), sealed_len(body.len()));
            assert_ne!(&sealed[..], body);
            assert_eq!(b.open(&sealed).unwrap(), body);
            assert_eq!(a.open(&b.seal(body)).unwrap(), body);
        }
    }

    #[test]
    fn a_different_key_fails_at_the_first_message() {
        let (ours, theirs) = (NetworkKey::generate(), NetworkKey::generate());
        let mut initiator = theirs.initiator();
        let mut responder = ours.responder();
        let err = responder.read(&initiator.write().unwrap()).unwrap_err();
        assert!(err.contains("does not hold this network's key"), "{err}");
    }

    #[test]
    fn a_plaintext_hello_is_named_in_the_refusal() {
        let mut responder = NetworkKey::generate().responder();
        let hello = br#"{"type":"HELLO","version":4,"role":"peer","listen":"127.0.0.1:1"}"#;
        let err = responder.read(hello).unwrap_err();
        assert!(err.contains("HELLO without a handshake"), "{err}");
    }

    #[test]
    fn replayed_altered_or_cut_frames_do_not_open() {
        let key = NetworkKey::generate();
        let (mut a, mut b) = handshake(&key, &key).unwrap();
        let sealed = a.seal(b"first");
        assert_eq!(b.open(&sealed).unwrap(), b"first");
        assert!(b.open(&sealed).is_err(), "a replayed frame opened");

        let (mut a, mut b) = handshake(&key, &key).unwrap();
        let mut altered = a.seal(b"second");
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(b.open(&altered).is_err(), "an altered frame opened");

        let (mut a, mut b) = handshake(&key, &key).unwrap();
        let sealed = a.seal(b"third");
        assert!(b.open(&sealed[..sealed.len() - 3]).is_err());
        assert!(b.open(&[0]).is_err());
        assert!(b.open(&[]).is_err());
    }

    #[test]
    fn a_frame_recorded_on_one_connection_does_not_open_on_another() {
        let key = NetworkKey::generate();
        let (mut a1, _b1) = handshake(&key, &key).unwrap();
        let (_a2, mut b2) = handshake(&key, &key).unwrap();
        assert!(b2.open(&a1.seal(b"hello")).is_err());
    }

    #[test]
    fn key_files_are_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network.key");
        let key = NetworkKey::create(&path).unwrap();
        assert_eq!(NetworkKey::load(&path).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = NetworkKey::create(&path).unwrap_err();
        assert!(matches!(again, KeyError::Exists { .. }), "{again}");
        assert_eq!(NetworkKey::load(&path).unwrap(), key, "overwritten");
    }

    #[test]
    fn a_malformed_key_file_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        for text in ["", "abc", &"zz".repeat(32), &"ab".repeat(33)] {
            std::fs::write(&path, text).unwrap();
            let err = NetworkKey::load(&path).unwrap_err().to_string();
            assert!(err.contains("bad.key"), "{err}");
            assert!(err.contains("gossipnet keygen"), "{err}");
        }
        let missing = NetworkKey::load(&dir.path().join("none.key"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("none.key") && missing.contains("keygen --out"),
            "{missing}"
        );
    }
}
