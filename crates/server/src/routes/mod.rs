//! Route handlers, one file per resource, following the OpenAPI tags (the `rights` tag spans
//! three: the rights themselves, rights requests, and receipts). Each handler takes its caller
//! through an extractor from [`crate::auth`] first, so nothing is parsed for a caller who may
//! not call it; it converts the wire body (declared beside it) to engine types, calls the
//! engine and converts back. None reaches the store or holds business rules.

use utoipa_axum::router::OpenApiRouter;

use crate::auth::AppState;

pub(crate) mod analytics;
mod audit;
mod catalogue;
mod consent;
mod events;
mod keys;
mod policy;
mod receipts;
mod recommendations;
mod requests;
pub(crate) mod rights;
mod sessions;
mod system;
mod transparency;

/// Every route of the API with its OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(system::router())
        .merge(policy::router())
        .merge(events::router())
        .merge(consent::router())
        .merge(catalogue::router())
        .merge(audit::router())
        .merge(keys::router())
        .merge(sessions::router())
        .merge(recommendations::router())
        .merge(rights::router())
        .merge(requests::router())
        .merge(receipts::router())
        .merge(transparency::router())
        .merge(analytics::router())
}
