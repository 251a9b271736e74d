//! API keys, roles and the principal every request acts as. Keys are minted here, stored only
//! as hashes, looked up by their public id and compared in constant time. Roles decide which
//! endpoints a key may call; the server enforces them per route.

use candor_crypto::{ct_eq, generate_api_key, hash_api_secret, split_api_key};
use candor_domain::ErrorCode;
use candor_domain::{AuditAction, SubjectId, Timestamp};
use candor_store::ApiKeyRecord;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::{Actor, Engine, EngineError, Result};

/// A key's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Events, consents on a subject's behalf, catalogue, recommendations.
    Service,
    /// Aggregate (differentially private) endpoints only.
    Analyst,
    /// Rights requests and the audit log.
    Dpo,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Service, Role::Analyst, Role::Dpo];
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Service => "service",
            Self::Analyst => "analyst",
            Self::Dpo => "dpo",
        }
    }
    /// Parses a role name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }
}

/// An authenticated caller: who acts (for the audit log) and what they may reach: an API key
/// with a role, or a person's own session ([`crate::sessions`]). [`Principal::admits`] and
/// [`Principal::may_act_for`] are the two questions every route asks through the server's
/// extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    id: String,
    access: Access,
    /// The one subject a session acts for.
    subject: Option<SubjectId>,
}

/// What a principal may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// An API key's role: `admin` reaches everything, other roles the operations that name them.
    Role(Role),
    /// A subject session: only the operations open to sessions, and only for its subject.
    Subject,
}

impl Principal {
    /// An API key with a role.
    pub fn api_key(key_id: impl Into<String>, role: Role) -> Self {
        Self {
            id: key_id.into(),
            access: Access::Role(role),
            subject: None,
        }
    }

    /// A subject session.
    pub fn session(session_id: impl Into<String>, subject: SubjectId) -> Self {
        Self {
            id: session_id.into(),
            access: Access::Subject,
            subject: Some(subject),
        }
    }

    /// How this caller appears in the audit log: `key:ID` or `session:ID`.
    pub fn actor(&self) -> Actor {
        match self.access {
            Access::Role(_) => Actor(format!("key:{}", self.id)),
            Access::Subject => Actor(format!("session:{}", self.id)),
        }
    }

    /// What the caller may reach.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The subject a session acts for (`None` for API keys).
    pub fn subject(&self) -> Option<&SubjectId> {
        self.subject.as_ref()
    }

    /// Whether an operation open to `roles` admits this caller (`admin` is admitted to all;
    /// a session to none of them: operations open to sessions say so apart).
    pub fn admits(&self, roles: &[Role]) -> bool {
        match self.access {
            Access::Role(Role::Admin) => true,
            Access::Role(role) => roles.contains(&role),
            Access::Subject => false,
        }
    }

    /// Whether the caller may act on this subject's data: every role admitted to a
    /// per-subject operation may act for any subject, a session for its own subject only.
    pub fn may_act_for(&self, subject: &SubjectId) -> bool {
        match self.access {
            Access::Role(_) => true,
            Access::Subject => self.subject.as_ref() == Some(subject),
        }
    }

    /// The public id of the credential (a key id or a session id).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A name for the caller's access, for error messages (`service`, `dpo`, ...).
    pub fn describe(&self) -> &'static str {
        match self.access {
            Access::Role(role) => role.as_str(),
            Access::Subject => "a subject session",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CachedKey {
    role: Role,
    secret_hash: Vec<u8>,
    expires_at: Option<Timestamp>,
    revoked: bool,
    /// When the store was last asked about this key (engine clock).
    checked: Timestamp,
}

/// How long a node trusts what it read about a key, in milliseconds: a key revoked on any
/// node stops admitting anything on every node within this.
pub const KEY_RECHECK_MS: i64 = 500;

/// Whether what a node read about a credential at `checked` may still be trusted at `now`.
pub(crate) fn still_fresh(checked: Timestamp, now: Timestamp) -> bool {
    (0..KEY_RECHECK_MS).contains(&(now.0 - checked.0))
}

/// The public id of a bearer token shaped like an API key (safe to log), if it is one.
pub fn key_id_of(token: &str) -> Option<&str> {
    split_api_key(token).map(|(id, _)| id)
}

/// An API key as listed: never its secret or its hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyView {
    /// Public id (the part of the token before the dot).
    pub id: String,
    /// Role.
    pub role: String,
    /// A label for people.
    pub label: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it expires (RFC 3339), if it does.
    pub expires_at: Option<String>,
    /// When it was revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
    /// Whether it admits anything now: not revoked, not expired.
    pub live: bool,
}

impl Engine {
    /// Mints an API key with a role, expiring at `expires_at` if given; returns the token,
    /// which is shown once and never stored.
    pub async fn create_api_key(
        &self,
        actor: &Actor,
        role: Role,
        label: &str,
        expires_at: Option<Timestamp>,
    ) -> Result<Zeroizing<String>> {
        if label.len() > 128 {
            return Err(EngineError::refused(
                ErrorCode::InvalidField,
                "the key label is longer than 128 bytes",
            ));
        }
        if expires_at.is_some_and(|t| t.0 <= self.now().0) {
            return Err(EngineError::refused(
                ErrorCode::InvalidField,
                "the key's expiry must be in the future",
            ));
        }
        let key = generate_api_key();
        let record = ApiKeyRecord {
            id: key.id.clone(),
            role: role.as_str().to_owned(),
            secret_hash: key.secret_hash.to_vec(),
            label: label.to_owned(),
            created_at: self.now(),
            expires_at,
            revoked_at: None,
        };
        let draft = self.draft(
            actor,
            AuditAction::KeyCreate,
            None,
            None,
            format!("key={} role={}", key.id, role.as_str()),
        );
        self.store.put_api_key(&record, &[draft]).await?;
        Ok(key.token)
    }

    /// Every API key, live or not, oldest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyView>> {
        let now = self.now();
        Ok(self
            .store
            .list_api_keys()
            .await?
            .into_iter()
            .map(|k| ApiKeyView {
                live: k.revoked_at.is_none() && k.expires_at.is_none_or(|t| t.0 > now.0),
                id: k.id,
                role: k.role,
                label: k.label,
                created_at: k.created_at.to_rfc3339(),
                expires_at: k.expires_at.map(|t| t.to_rfc3339()),
                revoked_at: k.revoked_at.map(|t| t.to_rfc3339()),
            })
            .collect())
    }

    /// Revokes a key (audited). This node stops admitting it at once, every other node
    /// within [`KEY_RECHECK_MS`]. Refused with `unknown_key` when there is no live key of
    /// that id.
    pub async fn revoke_api_key(&self, actor: &Actor, id: &str) -> Result<()> {
        let draft = self.draft(
            actor,
            AuditAction::KeyRevoke,
            None,
            None,
            format!("key={}", id.chars().take(64).collect::<String>()),
        );
        let revoked = self.store.revoke_api_key(id, self.now(), &[draft]).await?;
        self.api_keys.write().remove(id);
        if !revoked {
            return Err(EngineError::refused(
                ErrorCode::UnknownKey,
                "there is no live API key with this id",
            ));
        }
        Ok(())
    }

    /// What the store says about a key now, cached for [`KEY_RECHECK_MS`].
    async fn key_state(&self, id: &str) -> Result<Option<CachedKey>> {
        let cached = self.api_keys.read().get(id).cloned();
        let now = self.now();
        if let Some(c) = cached.filter(|c| still_fresh(c.checked, now)) {
            return Ok(Some(c));
        }
        let Some(record) = self.store.get_api_key(id).await? else {
            self.api_keys.write().remove(id);
            return Ok(None);
        };
        let Some(role) = Role::parse(&record.role) else {
            return Ok(None);
        };
        let c = CachedKey {
            role,
            secret_hash: record.secret_hash,
            expires_at: record.expires_at,
            revoked: record.revoked_at.is_some(),
            checked: now,
        };
        self.api_keys.write().insert(id.to_owned(), c.clone());
        Ok(Some(c))
    }

    /// The anti-forgery token of a credential's web forms: a keyed hash of its id, so a page
    /// of another origin cannot know it, and it needs no storage.
    pub fn form_token(&self, principal: &Principal) -> String {
        let actor = principal.actor();
        crate::signing::hex(&self.keys.keyed_hash(b"form-token", &[actor.0.as_bytes()]))
    }

    /// Whether `presented` is the anti-forgery token of `principal`'s forms (constant time).
    pub fn check_form_token(&self, principal: &Principal, presented: &str) -> bool {
        ct_eq(self.form_token(principal).as_bytes(), presented.as_bytes())
    }

    /// Checks a presented bearer token, an API key or a session token. `None` for anything
    /// that is not live: unknown, wrong secret, revoked or expired.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        if crate::sessions::is_session_token(token) {
            return self.authenticate_session(token).await;
        }
        let Some((id, secret)) = split_api_key(token) else {
            return Ok(None);
        };
        let Some(key) = self.key_state(id).await? else {
            return Ok(None);
        };
        if !ct_eq(&hash_api_secret(secret), &key.secret_hash) {
            return Ok(None);
        }
        if key.revoked || key.expires_at.is_some_and(|t| t.0 <= self.now().0) {
            return Ok(None);
        }
        Ok(Some(Principal::api_key(id, key.role)))
    }
}
