//! Validated identifiers. Subject and item ids are parsed once at the edge, so every other
//! layer can rely on their length and alphabet; pseudonyms are the only form of a subject id
//! that ever reaches storage.

use std::fmt;

/// The longest accepted subject or item id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("the {0} id is empty")]
    Empty(&'static str),
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    #[error("the {0} id is longer than {MAX_ID_LEN} bytes")]
    TooLong(&'static str),
    /// The id contains a character outside `A-Z a-z 0-9 _ . : @ -`.
    #[error("the {0} id may contain only letters, digits and _ . : @ -")]
    BadChar(&'static str),
}

fn check_id(kind: &'static str, raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty(kind));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(kind));
    }
    let ok = raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'));
    if !ok {
        return Err(IdError::BadChar(kind));
    }
    Ok(())
}

/// A data subject's id as the customer knows it. Personal data: it is never stored or logged,
/// only its keyed hash ([`Pseudonym`]) is. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubjectId(String);

impl SubjectId {
    /// Parses a subject id, checking its length and alphabet.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        check_id("subject", raw)?;
        Ok(Self(raw.to_owned()))
    }
    /// The raw id, for keyed hashing and for echoing back to the caller who sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectId(<redacted>)")
    }
}

/// A catalogue item's id. Catalogue data is not personal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(String);

impl ItemId {
    /// Parses an item id, checking its length and alphabet.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        check_id("item", raw)?;
        Ok(Self(raw.to_owned()))
    }
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The keyed hash (HMAC-SHA256 under the server secret) of a subject id: how storage and the
/// audit log refer to a subject.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym(pub [u8; 32]);

impl Pseudonym {
    /// The pseudonym's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Builds a pseudonym from stored bytes; `None` if the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }
    /// Lower-case hex, the form used in the audit log and in responses.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonym({})", &self.to_hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(SubjectId::parse("user-42@shop.example").is_ok());
        assert_eq!(SubjectId::parse(""), Err(IdError::Empty("subject")));
        assert_eq!(ItemId::parse("a b"), Err(IdError::BadChar("item")));
        assert_eq!(
            ItemId::parse(&"x".repeat(129)),
            Err(IdError::TooLong("item"))
        );
        assert!(ItemId::parse(&"x".repeat(128)).is_ok());
        assert_eq!(
            format!("{:?}", SubjectId::parse("alice").unwrap()),
            "SubjectId(<redacted>)"
        );
    }
}
