//! Signed JSON documents (erasure certificates, consent receipts): the server's Ed25519 key
//! signs the document's JSON with its `signature` field empty; anyone with the public key can
//! check it offline, and any changed byte fails.

use candor_crypto::{KeyRing, verify_signature};
use serde::Serialize;

/// A document that carries its own signature and signing key, both hex.
pub trait SignedDocument: Serialize + Clone {
    /// The signature field.
    fn signature_mut(&mut self) -> &mut String;
    /// The hex public key the document names.
    fn public_key(&self) -> &str;

    /// The bytes the signature covers: the JSON with the signature empty.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature_mut().clear();
        serde_json::to_vec(&unsigned).expect("a signed document serializes")
    }

    /// Checks the signature against the key the document names, and that key against
    /// `expected_key` when given.
    fn verify(&self, expected_key: Option<&[u8; 32]>) -> bool {
        let Some(key) = hex_decode(self.public_key()).and_then(|k| <[u8; 32]>::try_from(k).ok())
        else {
            return false;
        };
        if expected_key.is_some_and(|k| k != &key) {
            return false;
        }
        let mut copy = self.clone();
        let Some(signature) = hex_decode(copy.signature_mut()) else {
            return false;
        };
        verify_signature(&key, &self.signed_bytes(), &signature)
    }
}

/// Signs a document in place.
pub(crate) fn sign<D: SignedDocument>(keys: &KeyRing, document: &mut D) {
    let signature = keys.sign(&document.signed_bytes());
    *document.signature_mut() = hex(&signature);
}

/// A random identifier of `bytes` bytes from the thread's CSPRNG, as hex.
pub(crate) fn random_id(bytes: usize) -> String {
    let mut id = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::thread_rng(), id.as_mut_slice());
    hex(&id)
}

pub use candor_domain::hex::{decode as hex_decode, encode as hex};
