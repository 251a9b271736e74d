//! `catalogue`: items, which are not personal data.

use axum::Json;
use axum::http::StatusCode;
use candor_domain::Item;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AppState, Authorized, roles};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// Who may read the catalogue: everyone with a key.
pub const CATALOGUE_READERS: u8 = roles::SERVICE | roles::ANALYST | roles::DPO;

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_item, get_item, delete_item))
        .routes(routes!(import_items, list_items))
}

/// An item's fields (the id is in the path).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemFields {
    /// Display title.
    pub title: String,
    /// Category, e.g. a genre or a department.
    #[serde(default)]
    pub category: Option<String>,
    /// Provider, e.g. a seller or a studio.
    #[serde(default)]
    pub provider: Option<String>,
    /// Free-form attributes (a JSON object, at most 4 KiB).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A catalogue item.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemBody {
    /// Item id.
    pub id: String,
    /// Display title.
    pub title: String,
    /// Category.
    #[serde(default)]
    pub category: Option<String>,
    /// Provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Free-form attributes.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl From<ItemBody> for Item {
    fn from(b: ItemBody) -> Self {
        Item {
            id: b.id,
            title: b.title,
            category: b.category,
            provider: b.provider,
            attributes: b.attributes,
        }
    }
}

impl From<Item> for ItemBody {
    fn from(i: Item) -> Self {
        ItemBody {
            id: i.id,
            title: i.title,
            category: i.category,
            provider: i.provider,
            attributes: i.attributes,
        }
    }
}

/// A batch import of items.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemImport {
    /// Up to 10,000 items, inserted or replaced all or none.
    pub items: Vec<ItemBody>,
}

/// The result of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResponse {
    /// Items inserted or replaced.
    pub imported: usize,
}

/// A page of items.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemsPage {
    /// Items in id order.
    pub items: Vec<ItemBody>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// Paging parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Return items with ids after this one.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// Insert or replace one catalogue item.
#[utoipa::path(put, path = "/v1/items/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "Item id")),
    request_body = ItemFields,
    responses((status = 200, body = ItemBody, description = "Stored"), (status = 400, body = ErrorBody, description = "Invalid item")),
    security(("api_key" = ["service"])))]
pub async fn put_item(
    auth: Authorized<{ roles::SERVICE }>,
    ApiPath(id): ApiPath<String>,
    ApiJson(fields): ApiJson<ItemFields>,
) -> Result<Json<ItemBody>, ApiError> {
    let item = Item {
        id,
        title: fields.title,
        category: fields.category,
        provider: fields.provider,
        attributes: fields.attributes.unwrap_or_default(),
    };
    auth.engine().put_items(std::slice::from_ref(&item)).await?;
    Ok(Json(item.into()))
}

/// One catalogue item.
#[utoipa::path(get, path = "/v1/items/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "Item id")),
    responses((status = 200, body = ItemBody, description = "The item"), (status = 404, body = ErrorBody, description = "Unknown item")),
    security(("api_key" = ["service", "analyst", "dpo"])))]
pub async fn get_item(
    auth: Authorized<CATALOGUE_READERS>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ItemBody>, ApiError> {
    Ok(Json(auth.engine().get_item(&id).await?.into()))
}

/// Delete a catalogue item.
#[utoipa::path(delete, path = "/v1/items/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "Item id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody, description = "Unknown item")),
    security(("api_key" = ["service"])))]
pub async fn delete_item(
    auth: Authorized<{ roles::SERVICE }>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    auth.engine().delete_item(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Import up to 10,000 items at once, all or none.
#[utoipa::path(post, path = "/v1/items", tag = "catalogue",
    request_body = ItemImport,
    responses((status = 200, body = ImportResponse, description = "Imported"), (status = 400, body = ErrorBody, description = "An item is invalid; nothing was imported")),
    security(("api_key" = ["service"])))]
pub async fn import_items(
    auth: Authorized<{ roles::SERVICE }>,
    ApiJson(body): ApiJson<ItemImport>,
) -> Result<Json<ImportResponse>, ApiError> {
    let items: Vec<Item> = body.items.into_iter().map(Into::into).collect();
    auth.engine().put_items(&items).await?;
    Ok(Json(ImportResponse {
        imported: items.len(),
    }))
}

/// A page of the catalogue, in id order.
#[utoipa::path(get, path = "/v1/items", tag = "catalogue",
    params(PageParams),
    responses((status = 200, body = ItemsPage, description = "A page")),
    security(("api_key" = ["service", "analyst", "dpo"])))]
pub async fn list_items(
    auth: Authorized<CATALOGUE_READERS>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<ItemsPage>, ApiError> {
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let items = auth
        .engine()
        .list_items(page.after.as_deref(), limit)
        .await?;
    let next_after = (items.len() as u32 == limit)
        .then(|| items.last().map(|i| i.id.clone()))
        .flatten();
    Ok(Json(ItemsPage {
        items: items.into_iter().map(Into::into).collect(),
        next_after,
    }))
}
