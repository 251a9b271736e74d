//! Pure domain types for Candor: identifiers, timestamps, the policy, consent rules, events,
//! catalogue items and audit entries. Nothing here performs I/O, so everything here is
//! deterministic and cannot fail for reasons outside its arguments.

pub mod audit;
pub mod consent;
pub mod error;
pub mod event;
pub mod hex;
pub mod ids;
pub mod item;
pub mod names;
pub mod policy;
pub mod request;
pub mod tcf;
pub mod timestamp;

pub use audit::{AuditAction, AuditDraft, AuditEntry, AuditSealer, SignedHead, TreeHeadRecord};
pub use consent::{ConsentMethod, ConsentRecord, ConsentRow, ConsentState};
pub use error::{ErrorClass, ErrorCode};
pub use event::{EventInput, EventPayload, RefusalReason};
pub use ids::{IdError, ItemId, Pseudonym, SubjectId};
pub use item::Item;
pub use policy::{Policy, PolicyError, Purpose};
pub use request::{Jurisdiction, RequestKind, RequestStatus};
pub use timestamp::Timestamp;
