//! API keys and roles. Keys are minted here, stored only as hashes, looked up by their public
//! id and compared in constant time. Roles decide which endpoints a key may call; the server
//! enforces them per route.

use candor_crypto::{ct_eq, generate_api_key, hash_api_secret, split_api_key};
use candor_domain::ErrorCode;
use candor_domain::{AuditAction, Timestamp};
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

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's public id.
    pub key_id: String,
    /// Its role.
    pub role: Role,
}

impl Principal {
    /// How this caller appears in the audit log.
    pub fn actor(&self) -> Actor {
        Actor(format!("key:{}", self.key_id))
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
            created_at: Timestamp::now(),
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
        let cached = self
            .api_keys
            .read()
            .expect("api key cache lock")
            .get(id)
            .cloned();
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
                self.api_keys
                    .write()
                    .expect("api key cache lock")
                    .insert(id.to_owned(), c.clone());
                c
            }
        };
        if !ct_eq(&hash_api_secret(secret), &cached.secret_hash) {
            return Ok(None);
        }
        Ok(Some(Principal {
            key_id: id.to_owned(),
            role: cached.role,
        }))
    }
}
