//! Loading the key ring: from `CANDOR_MASTER_KEY`, `CANDOR_HMAC_SECRET` and
//! `CANDOR_SIGNING_KEY` when all three are set, else from `keys.toml` in the data directory,
//! created on first start with mode 0600.

use std::fs;
use std::io::Write;
use std::path::Path;

use candor_crypto::{ENV_HMAC_SECRET, ENV_MASTER_KEY, ENV_SIGNING_KEY, KeyRing};

use crate::{EngineError, Result};

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "keys.toml";

/// Loads the key ring from the environment or the data directory, creating the key file
/// (mode 0600) if neither exists.
pub fn load_or_create(data_dir: &Path) -> Result<KeyRing> {
    let vars = [ENV_MASTER_KEY, ENV_HMAC_SECRET, ENV_SIGNING_KEY].map(|v| std::env::var(v).ok());
    match vars {
        [Some(m), Some(h), Some(s)] => {
            return KeyRing::from_base64(&m, &h, &s)
                .map_err(|e| EngineError::Setup(format!("key variables: {e}")));
        }
        [None, None, None] => {}
        _ => {
            return Err(EngineError::Setup(format!(
                "set all of {ENV_MASTER_KEY}, {ENV_HMAC_SECRET} and {ENV_SIGNING_KEY}, or none"
            )));
        }
    }
    fs::create_dir_all(data_dir).map_err(|e| {
        EngineError::Setup(format!(
            "cannot create data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    let path = data_dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => KeyRing::from_key_file(&text)
            .map_err(|e| EngineError::Setup(format!("key file {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ring = KeyRing::generate();
            write_private(&path, ring.to_key_file().as_bytes()).map_err(|e| {
                EngineError::Setup(format!("cannot write key file {}: {e}", path.display()))
            })?;
            Ok(ring)
        }
        Err(e) => Err(EngineError::Setup(format!(
            "cannot read key file {}: {e}",
            path.display()
        ))),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let second = load_or_create(dir.path()).unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
