//! Extractors whose rejections are [`ApiError`]s, so malformed bodies, query strings and paths
//! get the same JSON error shape as everything else; and the GPC header.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use candor_domain::ErrorCode;

use crate::error::ApiError;

/// `axum::Json` with [`ApiError`] rejections.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// `axum::extract::Query` with [`ApiError`] rejections.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// `axum::extract::Path` with [`ApiError`] rejections (`invalid_id`: a path segment that is
/// not UTF-8, or not of the expected type).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::new(
                ErrorCode::InvalidId,
                format!("the path is invalid: {}", rejection.body_text()),
            )),
        }
    }
}

/// Whether the request carries a Global Privacy Control signal: `Sec-GPC: 1` exactly; any
/// other value is ignored, as the GPC specification says.
pub struct Gpc(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for Gpc {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let signal = parts
            .headers
            .get("sec-gpc")
            .is_some_and(|v| v.as_bytes() == b"1");
        Ok(Self(signal))
    }
}
