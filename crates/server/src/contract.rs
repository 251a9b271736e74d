//! The uniform parts of the OpenAPI document, added once for every operation rather than
//! remembered in each annotation: the error responses the extractors can give (401 and 403
//! where a key is required, 400 for a malformed path or query, 404 for an id in the path,
//! 413, 415 and 422 for a body) and the schema of every subject or item id in a path, so
//! generated clients and schemathesis see the contract the server keeps.

use candor_domain::ids::MAX_ID_LEN;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{Object, SchemaType, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, Schema};

/// The pattern every subject and item id matches (`candor_domain::ids`).
pub const ID_PATTERN: &str = "^[A-Za-z0-9_.:@-]+$";

/// Completes every operation of `api`.
pub fn complete(api: &mut OpenApi) {
    for item in api.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            complete_operation(op);
        }
    }
}

fn error(description: &str) -> RefOr<Response> {
    let mut response = Response::new(description);
    response.content.insert(
        "application/json".into(),
        Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
    );
    RefOr::T(response)
}

fn complete_operation(op: &mut Operation) {
    let security = op.security.as_deref().unwrap_or_default();
    let public = security.is_empty()
        || security.iter().any(|s| {
            serde_json::to_value(s).is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
        });
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.into())
            .or_insert_with(|| error(description));
    };
    if !public {
        add(
            "401",
            "No key, or an unknown, revoked or expired key (checked first)",
        );
        add("403", "The key's role is not admitted to this operation");
    }
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    if has_params {
        add("400", "A malformed id or query parameter");
    }
    let in_path = op
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Path);
    if in_path {
        add("404", "Nothing is held under this id");
    }
    if op.request_body.is_some() {
        add("400", "The body is not valid JSON");
        add("413", "The body is larger than the server accepts");
        add("415", "The body is not `application/json`");
        add("422", "The body is JSON of the wrong shape");
    }
    for param in op.parameters.iter_mut().flatten() {
        if param.parameter_in != ParameterIn::Path || param.name != "id" {
            continue;
        }
        let is_string = matches!(
            &param.schema,
            Some(RefOr::T(Schema::Object(o))) if o.schema_type == SchemaType::Type(Type::String)
        );
        if is_string {
            let mut schema = Object::with_type(Type::String);
            schema.pattern = Some(ID_PATTERN.into());
            schema.min_length = Some(1);
            schema.max_length = Some(MAX_ID_LEN);
            param.schema = Some(RefOr::T(Schema::Object(schema)));
        }
    }
}
