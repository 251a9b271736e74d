//! API keys and roles. Keys are minted here, stored only as hashes, looked up by their public
//! id and compared in constant time. Roles decide which endpoints a key may call; the server
//! enforces them per route.

use candor_crypto::{ct_eq, generate_api_key, hash_api_secret, split_api_key};
use candor_domain::ErrorCode;
use candor_domain::{AuditAction, SubjectId};
use candor_store::ApiKeyRecord;
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

/// An authenticated caller: who acts (for the audit log) and what they may reach. Today every
/// credential is an API key with a role; a subject-scoped credential (a person's own session)
/// becomes one more [`Access`] variant, and [`Principal::admits`] and
/// [`Principal::may_act_for`] are the two questions every route already asks through the
/// server's extractor, so handlers do not change when it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    key_id: String,
    access: Access,
}

/// What a principal may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// An API key's role: `admin` reaches everything, other roles the operations that name them.
    Role(Role),
}

impl Principal {
    /// An API key with a role.
    pub fn api_key(key_id: impl Into<String>, role: Role) -> Self {
        Self {
            key_id: key_id.into(),
            access: Access::Role(role),
        }
    }

    /// How this caller appears in the audit log.
    pub fn actor(&self) -> Actor {
        Actor(format!("key:{}", self.key_id))
    }

    /// What the caller may reach.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Whether an operation open to `roles` admits this caller (`admin` is admitted to all).
    pub fn admits(&self, roles: &[Role]) -> bool {
        match self.access {
            Access::Role(Role::Admin) => true,
            Access::Role(role) => roles.contains(&role),
        }
    }

    /// Whether the caller may act on this subject's data. Every role admitted to a
    /// per-subject operation may act for any subject; a subject-scoped credential will answer
    /// for its own subject only.
    pub fn may_act_for(&self, _subject: &SubjectId) -> bool {
        match self.access {
            Access::Role(_) => true,
        }
    }

    /// A name for the caller's access, for error messages (`service`, `dpo`, ...).
    pub fn describe(&self) -> &'static str {
        match self.access {
            Access::Role(role) => role.as_str(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CachedKey {
    role: Role,
    secret_hash: Vec<u8>,
}

impl Engine {
    /// Mints an API key with a role; returns the token, which is shown once and never stored.
    pub async fn create_api_key(
        &self,
        actor: &Actor,
        role: Role,
        label: &str,
    ) -> Result<Zeroizing<String>> {
        if label.len() > 128 {
            return Err(EngineError::refused(
                ErrorCode::InvalidField,
                "the key label is longer than 128 bytes",
            ));
        }
        let key = generate_api_key();
        let record = ApiKeyRecord {
            id: key.id.clone(),
            role: role.as_str().to_owned(),
            secret_hash: key.secret_hash.to_vec(),
            label: label.to_owned(),
            created_at: self.now(),
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

    /// Checks a presented bearer token. `None` for anything that is not a live key.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        let Some((id, secret)) = split_api_key(token) else {
            return Ok(None);
        };
        let cached = self.api_keys.read().get(id).cloned();
        let cached = match cached {
            Some(c) => c,
            None => {
                let Some(record) = self.store.get_api_key(id).await? else {
                    return Ok(None);
                };
                let Some(role) = Role::parse(&record.role) else {
                    return Ok(None);
                };
                let c = CachedKey {
                    role,
                    secret_hash: record.secret_hash,
                };
                self.api_keys.write().insert(id.to_owned(), c.clone());
                c
            }
        };
        if !ct_eq(&hash_api_secret(secret), &cached.secret_hash) {
            return Ok(None);
        }
        Ok(Some(Principal::api_key(id, cached.role)))
    }
}
