//! Loading the key ring: from `CANDOR_MASTER_KEY`, `CANDOR_HMAC_SECRET` and
//! `CANDOR_SIGNING_KEY` when all three are set, else from `keys.toml` in the data directory,
//! created on first start with mode 0600; the key store of subjects' data keys and the cache
//! of unwrapped ones; master-key rotation.

use std::fs;
use std::io::Write;
use std::path::Path;

use std::collections::HashMap;
use std::sync::Arc;

use candor_crypto::{ENV_HMAC_SECRET, ENV_MASTER_KEY, ENV_SIGNING_KEY, KeyRing, SecretKey};
use candor_domain::{Pseudonym, Timestamp};
use candor_store::Store;

use crate::{EngineConfig, EngineError, Result, audit};

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

/// Rotates the master key of the key file in `data_dir` over an engine opened with
/// `open`: (1) the key file gets a fresh master key and keeps the old one as previous,
/// (2) every data key is re-wrapped under the new one (the data itself is not touched),
/// (3) the previous key is dropped from the file. Each file write is atomic and unwrapping
/// tries both keys, so an interruption at any step loses nothing; running it again
/// finishes an interrupted rotation. Returns how many data keys were re-wrapped.
pub async fn rotate_master<F, Fut>(data_dir: &Path, open: F) -> Result<usize>
where
    F: FnOnce(std::sync::Arc<KeyRing>) -> Fut,
    Fut: std::future::Future<Output = Result<crate::Engine>>,
{
    if std::env::var_os(ENV_MASTER_KEY).is_some() {
        return Err(EngineError::Setup(format!(
            "the keys come from {ENV_MASTER_KEY}: rotate the master key in your secrets manager"
        )));
    }
    let path = data_dir.join(KEY_FILE);
    let text = fs::read_to_string(&path)
        .map_err(|e| EngineError::Setup(format!("cannot read key file {}: {e}", path.display())))?;
    let ring = KeyRing::from_key_file(&text)
        .map_err(|e| EngineError::Setup(format!("key file {}: {e}", path.display())))?;
    // An interrupted rotation already holds its new key: finish it rather than start over.
    let rotated = if ring.has_previous() {
        ring
    } else {
        ring.rotated()
    };
    replace_key_file(&path, &rotated)?;
    let rotated = std::sync::Arc::new(rotated);
    let engine = open(rotated.clone()).await?;
    let rewrapped = engine.rewrap_data_keys().await?;
    replace_key_file(&path, &rotated.without_previous())?;
    Ok(rewrapped)
}

/// Replaces the key file atomically (a private temporary file, synced, then renamed).
fn replace_key_file(path: &Path, ring: &KeyRing) -> Result<()> {
    let temp = path.with_extension("toml.new");
    let _ = fs::remove_file(&temp);
    let written = write_private(&temp, ring.to_key_file().as_bytes())
        .and_then(|()| fs::rename(&temp, path))
        .and_then(|()| match path.parent() {
            Some(dir) => fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        });
    written
        .map_err(|e| EngineError::Setup(format!("cannot write key file {}: {e}", path.display())))
}

/// Most unwrapped subject keys kept in memory.
const KEY_CACHE_LIMIT: usize = 200_000;

/// Opens the key store (or shares the data store when there is none of its own) and
/// moves any data keys the data store still holds into it.
pub(crate) async fn open_vault(
    config: &EngineConfig,
    keys: &Arc<KeyRing>,
    store: &Arc<dyn Store>,
) -> Result<Arc<dyn Store>> {
    let Some(url) = config.resolved_key_store_url() else {
        if config.store_url.starts_with("postgres") {
            tracing::warn!(
                "subject data keys are kept in the data store: a restored backup of it would \
                 bring erased subjects' keys back; set [store] key_store_url"
            );
        }
        return Ok(store.clone());
    };
    let vault = candor_store::open(&url, Arc::new(audit::Sealer::new(keys.clone()))).await?;
    // Copy every key first, then delete them from the data store at once (one purge).
    let mut moved = 0;
    let mut after = None;
    loop {
        let page = store.subject_key_page(after.as_ref(), 10_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        vault.ensure_subject_keys(&page, Timestamp::now()).await?;
        moved += page.len();
    }
    if moved > 0 {
        store.delete_all_subject_keys().await?;
        tracing::info!(moved, "moved subject data keys into the key store");
    }
    Ok(vault)
}

impl crate::Engine {
    /// The subjects' data keys. For a write (`create`), every key is confirmed against the
    /// key store (one query for the batch; unwrapping is cached) and missing ones are freshly
    /// made and stored, all in one transaction: a key another server erased or replaced is
    /// never used to seal. For a read, cached keys are used as they are (a read with a stale
    /// key fails to open and retries through [`Engine::reload_data_key`]). Subjects without a
    /// key (and `create` unset) are absent from the result.
    pub(crate) async fn data_keys(
        &self,
        subjects: &[Pseudonym],
        create: bool,
    ) -> Result<HashMap<Pseudonym, SecretKey>> {
        let mut keys = HashMap::with_capacity(subjects.len());
        let wanted: Vec<Pseudonym> = if create {
            subjects.to_vec()
        } else {
            let cache = self.key_cache.lock();
            subjects
                .iter()
                .filter(|s| match cache.get(*s) {
                    Some((_, key)) => {
                        keys.insert(**s, key.clone());
                        false
                    }
                    None => true,
                })
                .copied()
                .collect()
        };
        if wanted.is_empty() {
            return Ok(keys);
        }
        let mut wrapped = self.vault.subject_keys(&wanted).await?;
        if create && wrapped.len() < wanted.len() {
            let have: std::collections::HashSet<Pseudonym> =
                wrapped.iter().map(|(s, _)| *s).collect();
            let fresh: Vec<(Pseudonym, Vec<u8>)> = wanted
                .iter()
                .filter(|s| !have.contains(s))
                .map(|s| (*s, self.keys.wrap(&SecretKey::generate(), &s.0)))
                .collect();
            wrapped.extend(self.vault.ensure_subject_keys(&fresh, self.now()).await?);
        }
        let mut cache = self.key_cache.lock();
        if cache.len() + wrapped.len() > KEY_CACHE_LIMIT {
            cache.clear();
        }
        if create {
            // Keys the store no longer holds must not be used again from the cache.
            let held: std::collections::HashSet<Pseudonym> =
                wrapped.iter().map(|(s, _)| *s).collect();
            for s in &wanted {
                if !held.contains(s) {
                    cache.remove(s);
                }
            }
        }
        for (subject, wrapped_key) in wrapped {
            let key = match cache.get(&subject) {
                Some((cached, key)) if *cached == wrapped_key => key.clone(),
                _ => {
                    let key = self
                        .keys
                        .unwrap(&wrapped_key, &subject.0)
                        .map_err(|_| EngineError::Crypto)?;
                    cache.insert(subject, (wrapped_key, key.clone()));
                    key
                }
            };
            keys.insert(subject, key);
        }
        Ok(keys)
    }

    /// Drops a subject's cached key and reads it again from the key store: for a read whose
    /// cached key no longer opens the data (another server erased it and a new one was made).
    pub(crate) async fn reload_data_key(&self, subject: &Pseudonym) -> Result<Option<SecretKey>> {
        self.key_cache.lock().remove(subject);
        Ok(self
            .data_keys(std::slice::from_ref(subject), false)
            .await?
            .remove(subject))
    }

    /// Re-wraps every data key in the key store under the key ring's current master key, a
    /// page per transaction; returns how many.
    pub async fn rewrap_data_keys(&self) -> Result<usize> {
        let mut after = None;
        let mut count = 0;
        loop {
            let page = self.vault.subject_key_page(after.as_ref(), 10_000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            let rewrapped: Vec<_> = page
                .iter()
                .map(|(subject, wrapped)| {
                    let key = self
                        .keys
                        .unwrap(wrapped, &subject.0)
                        .map_err(|_| EngineError::Crypto)?;
                    Ok((*subject, self.keys.wrap(&key, &subject.0)))
                })
                .collect::<Result<_>>()?;
            self.vault.rewrap_subject_keys(&rewrapped).await?;
            count += rewrapped.len();
        }
        self.key_cache.lock().clear();
        Ok(count)
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
