//! A peer's identity key on disk.
//!
//! The key lives in the peer's data directory as `identity.key`: the
//! 32-byte ed25519 secret as 64 hex digits and a newline. The first start
//! creates it from the operating system's randomness, readable by its owner
//! only; later starts reuse it, so a peer restarted with the same data
//! directory keeps its identity. The seeds learn the public key when the
//! peer registers (see [`crate::proto::evidence`]).

use std::{
    io,
    path::{Path, PathBuf},
};

use rand::{rngs::OsRng, TryRngCore};

use crate::{proto::evidence::Identity, secret_file};

/// The key file's name inside the data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Why the identity could not be had. Nothing was written when one is
/// returned, except for a data directory that was created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot create data directory {path}: {source}; pass --data-dir DIR with a writable directory")]
    DataDir { path: PathBuf, source: io::Error },
    #[error("cannot read the identity key {path}: {source}; make it readable by this user (chmod 600 {path}), or pass --data-dir DIR for another identity")]
    Read { path: PathBuf, source: io::Error },
    #[error("the identity key {path} is malformed: {reason}; it must hold 64 hex digits. Restore it from a backup, or delete it to give this peer a new identity")]
    Malformed { path: PathBuf, reason: String },
    #[error("cannot write the identity key {path}: {source}; pass --data-dir DIR with a writable directory")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot draw a new identity key: the operating system's randomness failed: {0}")]
    Random(String),
    #[error("there is no identity key at {path}; give the data directory of a node that has run (--data-dir DIR)")]
    Missing { path: PathBuf },
}

/// The identity kept in `dir`, which must exist: nothing is created.
pub fn load(dir: &Path) -> Result<Identity, IdentityError> {
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => secret_file::parse(&bytes)
            .map(Identity::from_secret)
            .map_err(|reason| IdentityError::Malformed { path, reason }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(IdentityError::Missing { path }),
        Err(source) => Err(IdentityError::Read { path, source }),
    }
}

/// The identity kept in `dir`, created there on first use. Returns it, and
/// whether it was created now.
pub fn load_or_create(dir: &Path) -> Result<(Identity, bool), IdentityError> {
    std::fs::create_dir_all(dir).map_err(|source| IdentityError::DataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(IDENTITY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => secret_file::parse(&bytes)
            .map(|secret| (Identity::from_secret(secret), false))
            .map_err(|reason| IdentityError::Malformed { path, reason }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(&path).map(|i| (i, true)),
        Err(source) => Err(IdentityError::Read { path, source }),
    }
}

/// Writes a new key to `path`, which must not exist: two peers started on
/// one directory at once cannot both write it.
fn create(path: &Path) -> Result<Identity, IdentityError> {
    let mut secret = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut secret)
        .map_err(|e| IdentityError::Random(e.to_string()))?;
    let identity = Identity::from_secret(secret);
    secret_file::write_new(path, &secret).map_err(|source| IdentityError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("peer-6001");
        let (first, created) = load_or_create(&data).unwrap();
        assert!(created);
        let path = data.join(IDENTITY_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", hex::encode(first.secret())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let (again, created) = load_or_create(&data).unwrap();
        assert!(!created);
        assert_eq!(again.public_key(), first.public_key());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "rewritten");
    }

    #[test]
    fn a_malformed_key_file_is_an_error_naming_the_path_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        for bad in [&b"not a key\n"[..], &[b'g'; 64], &[0xff, 0xfe], b""] {
            std::fs::write(&path, bad).unwrap();
            let e = load_or_create(dir.path()).unwrap_err();
            assert!(matches!(e, IdentityError::Malformed { .. }), "{e:?}");
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains("delete it"), "{text}");
            // The bad file is left for the user to look at.
            assert_eq!(std::fs::read(&path).unwrap(), bad);
        }
    }

    #[test]
    fn a_data_dir_that_cannot_be_created_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let e = load_or_create(&file.join("peer")).unwrap_err();
        assert!(matches!(e, IdentityError::DataDir { .. }), "{e:?}");
        assert!(e.to_string().contains("a-file"), "{e}");
    }
}
