//! Subject sessions: a person's own, narrow credential. The business's backend opens one after
//! its own login; the token it gets is sealed under a key derived from the key ring and names
//! the session, the subject's pseudonym, the expiry and (sealed, never in the clear) the
//! subject id. A session admits only what the person may do about themselves (the server
//! decides which operations); it lives until it expires, is revoked, or the subject is erased,
//! and every server stops admitting it within [`crate::KEY_RECHECK_MS`] of a revocation
//! anywhere.

use candor_crypto::SESSION_TOKEN_PREFIX;
use candor_domain::{AuditAction, ErrorCode, Pseudonym, SubjectId, Timestamp};
use candor_store::SessionRecord;
use zeroize::Zeroizing;

use crate::auth::still_fresh;
use crate::signing::random_id;
use crate::{Actor, Engine, EngineError, Principal, Result};

/// The shortest session that may be asked for, in seconds.
pub const MIN_SESSION_SECS: u64 = 60;
/// Version byte of the sealed claims.
const CLAIMS_V1: u8 = 1;
/// Bytes of a session id (hex in the store).
const SESSION_ID_BYTES: usize = 16;

/// A freshly opened session: the token is shown once and never stored or logged.
#[derive(Debug)]
pub struct SubjectSession {
    /// The bearer token (`cs1.` and the sealed claims).
    pub token: Zeroizing<String>,
    /// The session's public id (named in the audit log).
    pub id: String,
    /// When it stops admitting anything.
    pub expires_at: Timestamp,
}

/// What a token says, once opened.
struct Claims {
    id: String,
    pseudonym: Pseudonym,
    expires_at: Timestamp,
    subject: SubjectId,
}

impl Claims {
    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Vec::with_capacity(1 + SESSION_ID_BYTES + 32 + 8 + 64);
        out.push(CLAIMS_V1);
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.pseudonym.0);
        out.extend_from_slice(&self.expires_at.0.to_be_bytes());
        out.extend_from_slice(self.subject.as_str().as_bytes());
        Zeroizing::new(out)
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        let id_len = SESSION_ID_BYTES * 2;
        let (&version, rest) = bytes.split_first()?;
        if version != CLAIMS_V1 || rest.len() < id_len + 32 + 8 {
            return None;
        }
        let (id, rest) = rest.split_at(id_len);
        let (pseudonym, rest) = rest.split_at(32);
        let (expires, subject) = rest.split_at(8);
        Some(Self {
            id: std::str::from_utf8(id).ok()?.to_owned(),
            pseudonym: Pseudonym(pseudonym.try_into().ok()?),
            expires_at: Timestamp(i64::from_be_bytes(expires.try_into().ok()?)),
            subject: SubjectId::parse(std::str::from_utf8(subject).ok()?).ok()?,
        })
    }
}

/// What this server last read about a session.
#[derive(Debug, Clone)]
pub(crate) struct CachedSession {
    /// Whose it is; `None`: the store holds no such session.
    subject: Option<Pseudonym>,
    checked: Timestamp,
}

/// Whether a bearer token is shaped like a session token (not an API key).
pub(crate) fn is_session_token(token: &str) -> bool {
    token.starts_with(SESSION_TOKEN_PREFIX)
}

impl Engine {
    /// Opens a session for a subject, valid `ttl_secs` (at most the configured session
    /// length, which is also the default); audited. The subject need not be known yet: a
    /// person may visit their privacy center before anything is held.
    pub async fn open_session(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        ttl_secs: Option<u64>,
    ) -> Result<SubjectSession> {
        let longest = self.config.session_ttl_secs;
        let ttl = ttl_secs.unwrap_or(longest);
        if !(MIN_SESSION_SECS..=longest).contains(&ttl) {
            return Err(EngineError::refused(
                ErrorCode::InvalidField,
                format!(
                    "a session lasts between {MIN_SESSION_SECS} and {longest} seconds \
                     (the server's [sessions] ttl_secs)"
                ),
            ));
        }
        let now = self.now();
        let claims = Claims {
            id: random_id(SESSION_ID_BYTES),
            pseudonym: self.pseudonymize(subject),
            expires_at: Timestamp(now.0 + ttl as i64 * 1000),
            subject: subject.clone(),
        };
        let record = SessionRecord {
            id: claims.id.clone(),
            subject: claims.pseudonym,
            created_at: now,
            expires_at: claims.expires_at,
        };
        let draft = self.draft(
            actor,
            AuditAction::SessionOpen,
            Some(claims.pseudonym),
            None,
            format!("session={} ttl_secs={ttl}", claims.id),
        );
        self.store.put_session(&record, &[draft]).await?;
        Ok(SubjectSession {
            token: self.keys.seal_session_token(&claims.to_bytes()),
            id: claims.id,
            expires_at: claims.expires_at,
        })
    }

    /// Revokes every session of a subject (audited when there was one); returns how many.
    /// This server stops admitting them at once, every other within
    /// [`crate::KEY_RECHECK_MS`].
    pub async fn revoke_sessions(&self, actor: &Actor, subject: &SubjectId) -> Result<u64> {
        let pseudonym = self.pseudonymize(subject);
        let draft = self.draft(
            actor,
            AuditAction::SessionRevoke,
            Some(pseudonym),
            None,
            "sessions=all".to_owned(),
        );
        let n = self.store.revoke_sessions(&pseudonym, &[draft]).await?;
        self.forget_sessions(&pseudonym);
        Ok(n)
    }

    /// Drops this server's memory of a subject's sessions (revoked or erased).
    pub(crate) fn forget_sessions(&self, pseudonym: &Pseudonym) {
        self.sessions
            .write()
            .retain(|_, s| s.subject.as_ref() != Some(pseudonym));
    }

    /// Checks a session token: `None` unless it opens under this key ring, has not expired,
    /// and its session is still held by the store (checked at most
    /// [`crate::KEY_RECHECK_MS`] ago).
    pub(crate) async fn authenticate_session(&self, token: &str) -> Result<Option<Principal>> {
        let Some(claims) = self
            .keys
            .open_session_token(token)
            .and_then(|bytes| Claims::parse(&bytes))
        else {
            return Ok(None);
        };
        let now = self.now();
        if claims.expires_at.0 <= now.0 {
            return Ok(None);
        }
        let cached = self.sessions.read().get(&claims.id).cloned();
        let subject = match cached.filter(|c| still_fresh(c.checked, now)) {
            Some(c) => c.subject,
            None => {
                let subject = self.store.get_session(&claims.id).await?.map(|r| r.subject);
                self.sessions.write().insert(
                    claims.id.clone(),
                    CachedSession {
                        subject,
                        checked: now,
                    },
                );
                subject
            }
        };
        if subject != Some(claims.pseudonym) {
            return Ok(None);
        }
        Ok(Some(Principal::session(claims.id, claims.subject)))
    }

    /// Deletes sessions that have expired (they admit nothing already); returns how many.
    pub async fn purge_expired_sessions(&self) -> Result<u64> {
        let now = self.now();
        self.sessions
            .write()
            .retain(|_, s| still_fresh(s.checked, now));
        Ok(self.store.purge_expired_sessions(now).await?)
    }
}
