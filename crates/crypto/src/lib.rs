//! Candor's cryptography, built only from vetted primitives: HMAC-SHA256 pseudonyms,
//! XChaCha20-Poly1305 envelope encryption (a data key per subject, wrapped by a master key),
//! Ed25519 signatures, SHA-256 for the audit chain, sealed subject-session tokens, and API-key
//! hashing with constant-time comparison; `merkle` is the RFC 6962 tree over the audit log.
//! No key material is ever printed: `Debug` is redacted and keys zeroize on drop.

pub mod merkle;

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Why a cryptographic operation failed. Messages never include key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A ciphertext failed authentication (wrong key, tampered or truncated).
    #[error("a ciphertext failed authentication")]
    Decrypt,
    /// A key file or key variable is malformed.
    #[error("malformed key material: {0}")]
    BadKey(&'static str),
}

const NONCE_LEN: usize = 24;

/// A 256-bit symmetric key that zeroizes on drop and never prints.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl SecretKey {
    /// A fresh random key from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        Self(bytes)
    }
    fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::BadKey("a key must be 32 bytes"))?;
        Ok(Self(Zeroizing::new(arr)))
    }
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_ref().into())
    }

    /// Encrypts `plaintext` bound to `aad`; the output is `nonce || ciphertext || tag`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        // A 192-bit random nonce from the thread's CSPRNG (ChaCha, seeded and reseeded from
        // the OS): collisions are negligible, and no system call per encryption.
        let nonce = XChaCha20Poly1305::generate_nonce(&mut rand::thread_rng());
        let ct = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts the output of [`SecretKey::seal`] with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| CryptoError::Decrypt)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// The server's long-lived secrets: the master key that wraps per-subject data keys, the HMAC
/// secret for pseudonyms, and the Ed25519 key that signs audit heads (and later receipts).
pub struct KeyRing {
    master: SecretKey,
    /// The master key before a rotation that has not finished re-wrapping: unwrapping tries
    /// it after `master`, so a rotation interrupted at any point loses nothing.
    previous_master: Option<SecretKey>,
    hmac_secret: SecretKey,
    signing: SigningKey,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyRing(<redacted>)")
    }
}

/// The prefix of every subject-session token (format version 1).
pub const SESSION_TOKEN_PREFIX: &str = "cs1.";
/// The longest session token body opened, in characters (claims are small).
const MAX_SESSION_TOKEN: usize = 1024;

/// Environment variable names for supplying the key ring without a key file.
pub const ENV_MASTER_KEY: &str = "CANDOR_MASTER_KEY";
/// See [`ENV_MASTER_KEY`].
pub const ENV_HMAC_SECRET: &str = "CANDOR_HMAC_SECRET";
/// See [`ENV_MASTER_KEY`].
pub const ENV_SIGNING_KEY: &str = "CANDOR_SIGNING_KEY";

fn decode_key(b64: &str) -> Result<SecretKey, CryptoError> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(b64.trim())
            .map_err(|_| CryptoError::BadKey("a key is not valid base64"))?,
    );
    SecretKey::from_slice(&bytes)
}

impl KeyRing {
    /// Fresh random secrets.
    pub fn generate() -> Self {
        Self {
            master: SecretKey::generate(),
            previous_master: None,
            hmac_secret: SecretKey::generate(),
            signing: SigningKey::generate(&mut OsRng),
        }
    }

    /// The same ring with a fresh master key, the current one kept as the previous: the
    /// first step of a rotation (the pseudonym secret and signing key stay, so pseudonyms,
    /// receipts and the audit chain are unaffected).
    pub fn rotated(&self) -> Self {
        Self {
            master: SecretKey::generate(),
            previous_master: Some(SecretKey(self.master.0.clone())),
            hmac_secret: SecretKey(self.hmac_secret.0.clone()),
            signing: self.signing.clone(),
        }
    }

    /// The same ring without its previous master key: the last step of a rotation, once
    /// every data key is wrapped under the current one.
    pub fn without_previous(&self) -> Self {
        Self {
            master: SecretKey(self.master.0.clone()),
            previous_master: None,
            hmac_secret: SecretKey(self.hmac_secret.0.clone()),
            signing: self.signing.clone(),
        }
    }

    /// Whether a previous master key is still held (a rotation has not finished).
    pub fn has_previous(&self) -> bool {
        self.previous_master.is_some()
    }

    /// Builds a key ring from three base64 strings (32 bytes each).
    pub fn from_base64(
        master: &str,
        hmac_secret: &str,
        signing: &str,
    ) -> Result<Self, CryptoError> {
        let signing = decode_key(signing)?;
        Ok(Self {
            master: decode_key(master)?,
            previous_master: None,
            hmac_secret: decode_key(hmac_secret)?,
            signing: SigningKey::from_bytes(&signing.0),
        })
    }

    /// The key file's text: three `name = "base64"` lines. Write it with mode 0600.
    pub fn to_key_file(&self) -> Zeroizing<String> {
        let previous = self.previous_master.as_ref().map_or(String::new(), |k| {
            format!(
                "previous_master_key = \"{}\"\n",
                STANDARD.encode(k.0.as_ref())
            )
        });
        Zeroizing::new(format!(
            "# Candor key file. Keep it secret (mode 0600) and backed up: without it the data is unreadable.\n\
             master_key = \"{}\"\n{previous}hmac_secret = \"{}\"\nsigning_key = \"{}\"\n",
            STANDARD.encode(self.master.0.as_ref()),
            STANDARD.encode(self.hmac_secret.0.as_ref()),
            STANDARD.encode(self.signing.to_bytes()),
        ))
    }

    /// Parses the text written by [`KeyRing::to_key_file`].
    pub fn from_key_file(text: &str) -> Result<Self, CryptoError> {
        let mut fields: [Option<&str>; 4] = [None; 4];
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (name, value) = line.split_once('=').ok_or(CryptoError::BadKey(
                "a key file line is not `name = \"value\"`",
            ))?;
            let value = value.trim().trim_matches('"');
            let slot = match name.trim() {
                "master_key" => 0,
                "hmac_secret" => 1,
                "signing_key" => 2,
                "previous_master_key" => 3,
                _ => return Err(CryptoError::BadKey("the key file has an unknown entry")),
            };
            fields[slot] = Some(value);
        }
        match fields {
            [Some(m), Some(h), Some(s), previous] => {
                let mut ring = Self::from_base64(m, h, s)?;
                ring.previous_master = previous.map(decode_key).transpose()?;
                Ok(ring)
            }
            _ => Err(CryptoError::BadKey(
                "the key file needs master_key, hmac_secret and signing_key",
            )),
        }
    }

    /// The keyed hash of a subject id: the pseudonym under which everything is stored.
    pub fn pseudonymize(&self, subject_id: &str) -> [u8; 32] {
        self.keyed_hash(b"subject", &[subject_id.as_bytes()])
    }

    /// A keyed hash over length-prefixed parts, separated by a domain label.
    pub fn keyed_hash(&self, domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.hmac_secret.0.as_ref())
            .expect("HMAC accepts any key length");
        mac.update(&(domain.len() as u32).to_be_bytes());
        mac.update(domain);
        for part in parts {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Wraps a data key under the master key, bound to the subject's pseudonym.
    pub fn wrap(&self, data_key: &SecretKey, pseudonym: &[u8]) -> Vec<u8> {
        self.master.seal(data_key.0.as_ref(), pseudonym)
    }

    /// Unwraps a data key wrapped by [`KeyRing::wrap`] for the same pseudonym.
    /// During a rotation, a key still wrapped under the previous master key opens too.
    pub fn unwrap(&self, wrapped: &[u8], pseudonym: &[u8]) -> Result<SecretKey, CryptoError> {
        let opened = match self.master.open(wrapped, pseudonym) {
            Ok(bytes) => bytes,
            Err(e) => match &self.previous_master {
                Some(previous) => previous.open(wrapped, pseudonym)?,
                None => return Err(e),
            },
        };
        SecretKey::from_slice(&Zeroizing::new(opened))
    }

    /// The key that seals subject-session tokens: derived from the pseudonym secret (HMAC as
    /// the PRF, under its own domain label), so it outlives master-key rotations and needs no
    /// entry of its own in the key file.
    fn session_key(&self) -> SecretKey {
        SecretKey(Zeroizing::new(self.keyed_hash(b"session-token", &[])))
    }

    /// Seals a session token's claims: `cs1.` and the base64url of an XChaCha20-Poly1305
    /// sealing bound to the token version, so the claims are secret and cannot be forged.
    pub fn seal_session_token(&self, claims: &[u8]) -> Zeroizing<String> {
        let sealed = self
            .session_key()
            .seal(claims, SESSION_TOKEN_PREFIX.as_bytes());
        Zeroizing::new(format!(
            "{SESSION_TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// Opens a token sealed by [`KeyRing::seal_session_token`]; `None` for anything else
    /// (another prefix, bad encoding, forged or sealed under other keys).
    pub fn open_session_token(&self, token: &str) -> Option<Zeroizing<Vec<u8>>> {
        let body = token.strip_prefix(SESSION_TOKEN_PREFIX)?;
        if body.len() > MAX_SESSION_TOKEN {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(body).ok()?;
        self.session_key()
            .open(&sealed, SESSION_TOKEN_PREFIX.as_bytes())
            .ok()
            .map(Zeroizing::new)
    }

    /// Signs a message with the server's Ed25519 key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The public half of the signing key.
    pub fn verifying_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// A short non-secret fingerprint of the key ring, stored with the database so that a
    /// server started with the wrong keys refuses to run instead of writing unreadable data.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.keyed_hash(b"fingerprint", &[&self.verifying_key()])[..12])
    }
}

/// Verifies an Ed25519 signature with a public key.
pub fn verify_signature(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

/// SHA-256.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A newly minted API key: show `token` once; store `id` and `secret_hash`.
pub struct NewApiKey {
    /// Public identifier, used to look the key up.
    pub id: String,
    /// The full token the client sends as `Authorization: Bearer <token>`.
    pub token: Zeroizing<String>,
    /// SHA-256 of the secret part, the only form that is stored.
    pub secret_hash: [u8; 32],
}

/// The prefix of every Candor API key.
pub const API_KEY_PREFIX: &str = "cnd_";

/// Mints an API key: `cnd_<id>_<secret>` with a 96-bit id and a 256-bit secret.
pub fn generate_api_key() -> NewApiKey {
    let mut id = [0u8; 12];
    OsRng.fill_bytes(&mut id);
    let mut secret = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(secret.as_mut());
    let id = hex::encode(id);
    let secret_text = Zeroizing::new(URL_SAFE_NO_PAD.encode(secret.as_ref()));
    NewApiKey {
        token: Zeroizing::new(format!("{API_KEY_PREFIX}{id}_{}", secret_text.as_str())),
        secret_hash: hash_api_secret(&secret_text),
        id,
    }
}

/// Splits a presented token into its id and secret parts, if it is shaped like a key.
pub fn split_api_key(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(API_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 24 && !secret.is_empty() && secret.len() <= 64).then_some((id, secret))
}

/// The stored hash of an API key's secret part (the secret has 256 bits of entropy, so a
/// plain SHA-256 is the right tool; a password hash would add nothing but latency).
pub fn hash_api_secret(secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"candor-api-key-v1");
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// Compares two byte strings in constant time.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_binding() {
        let ring = KeyRing::generate();
        let p = ring.pseudonymize("alice");
        let dk = SecretKey::generate();
        let wrapped = ring.wrap(&dk, &p);
        let back = ring.unwrap(&wrapped, &p).unwrap();
        let sealed = back.seal(b"hello", &p);
        assert_eq!(dk.open(&sealed, &p).unwrap(), b"hello");
        // Bound to the pseudonym: another subject's AAD fails.
        let q = ring.pseudonymize("bob");
        assert_eq!(dk.open(&sealed, &q), Err(CryptoError::Decrypt));
        assert!(ring.unwrap(&wrapped, &q).is_err());
        // Any flipped byte fails.
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(dk.open(&bad, &p).is_err());
        }
    }

    #[test]
    fn session_tokens_are_secret_and_unforgeable() {
        let ring = KeyRing::generate();
        let token = ring.seal_session_token(b"claims of alice");
        assert!(token.starts_with(SESSION_TOKEN_PREFIX));
        assert!(!token.contains("alice"));
        assert_eq!(
            ring.open_session_token(&token)
                .as_deref()
                .map(Vec::as_slice),
            Some(&b"claims of alice"[..])
        );
        // Another ring (or another server's keys) cannot open it, and no edit survives.
        assert!(KeyRing::generate().open_session_token(&token).is_none());
        let body = &token[SESSION_TOKEN_PREFIX.len()..];
        for i in 0..body.len() {
            let mut bad: Vec<u8> = body.bytes().collect();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            let bad = format!("{SESSION_TOKEN_PREFIX}{}", String::from_utf8(bad).unwrap());
            assert!(
                ring.open_session_token(&bad).is_none(),
                "edit at {i} opened"
            );
        }
        assert!(ring.open_session_token(body).is_none());
        assert!(ring.open_session_token("cs1.").is_none());
        assert!(
            ring.open_session_token(&format!("cs1.{}", "A".repeat(5000)))
                .is_none()
        );
        // Survives a master-key rotation (sessions are not data keys).
        assert!(ring.rotated().open_session_token(&token).is_some());
    }

    #[test]
    fn key_file_round_trip() {
        let ring = KeyRing::generate();
        let text = ring.to_key_file();
        let back = KeyRing::from_key_file(&text).unwrap();
        assert_eq!(ring.pseudonymize("x"), back.pseudonymize("x"));
        assert_eq!(ring.verifying_key(), back.verifying_key());
        assert_eq!(ring.fingerprint(), back.fingerprint());
        assert!(KeyRing::from_key_file("master_key = \"AA==\"").is_err());
        assert_eq!(format!("{ring:?}"), "KeyRing(<redacted>)");
    }

    #[test]
    fn pseudonyms_are_keyed() {
        let a = KeyRing::generate();
        let b = KeyRing::generate();
        assert_eq!(a.pseudonymize("alice"), a.pseudonymize("alice"));
        assert_ne!(a.pseudonymize("alice"), b.pseudonymize("alice"));
        assert_ne!(a.pseudonymize("alice"), a.pseudonymize("alicf"));
    }

    #[test]
    fn signatures_verify_and_detect_changes() {
        let ring = KeyRing::generate();
        let sig = ring.sign(b"head");
        assert!(verify_signature(&ring.verifying_key(), b"head", &sig));
        assert!(!verify_signature(&ring.verifying_key(), b"heae", &sig));
        assert!(!verify_signature(
            &KeyRing::generate().verifying_key(),
            b"head",
            &sig
        ));
    }

    #[test]
    fn api_keys() {
        let key = generate_api_key();
        let (id, secret) = split_api_key(&key.token).unwrap();
        assert_eq!(id, key.id);
        assert!(ct_eq(&hash_api_secret(secret), &key.secret_hash));
        assert!(!ct_eq(&hash_api_secret("nope"), &key.secret_hash));
        assert!(split_api_key("Bearer xyz").is_none());
    }
}
