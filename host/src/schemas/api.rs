//! The Confluent Schema Registry REST API, the subset producers and consumers use, on the
//! admin port: a stock client (confluent-kafka's `SchemaRegistryClient`, its
//! `AvroSerializer`) registers and reads schemas here unchanged. Errors carry the
//! registry's `error_code`s (40401 subject, 40402 version, 40403 schema not found,
//! 40408 no subject level, 409 incompatible, 42201 invalid schema, 42202 invalid version,
//! 42203 invalid level, 50001 store failed, 50003 no registry).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::{Level, Refusal, Registered, Registry, SchemaType, DEFAULT_LEVEL};

/// Where the registry is, once the pipeline has opened it.
pub type Slot = Arc<OnceLock<Registry>>;

/// The registry's routes, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>(slot: Slot) -> Router<S> {
    Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route("/subjects/{subject}/versions/{version}/schema", get(version_text))
        .route("/schemas/ids/{id}", get(by_id))
        .route("/schemas/ids/{id}/schema", get(by_id_text))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route("/schemas/types", get(|| async { reply(StatusCode::OK, json!(["AVRO", "JSON"])) }))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(test_one))
        .route("/compatibility/subjects/{subject}/versions", post(test_all))
        .route("/config", get(global_level).put(set_global_level))
        .route("/config/{subject}", get(subject_level).put(set_subject_level).delete(clear_subject_level))
        .with_state(slot)
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/vnd.schemaregistry.v1+json")], body.to_string()).into_response()
}

fn error(code: u32, message: impl Into<String>) -> Response {
    let status = if code >= 10_000 { code / 100 } else { code };
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(status, json!({"error_code": code, "message": message.into()}))
}

fn failed(e: anyhow::Error) -> Response {
    error(50001, format!("the registry's store failed: {e:#}"))
}

/// Runs `f` against the registry off the server's thread (its calls block on the database).
async fn with<F>(slot: Slot, f: F) -> Response
where
    F: FnOnce(&Registry) -> Response + Send + 'static,
{
    let Some(registry) = slot.get().cloned() else {
        return error(50003, "this host serves no schema registry: its pipeline has no [schemas] section, or points at an external registry");
    };
    tokio::task::spawn_blocking(move || f(&registry))
        .await
        .unwrap_or_else(|e| error(50001, format!("the registry's request failed: {e}")))
}

fn schema_json(r: &Registered) -> Value {
    let mut v = json!({"subject": r.subject, "version": r.version, "id": r.id, "schema": r.text});
    if r.ty != SchemaType::Avro {
        v["schemaType"] = json!(r.ty.name());
    }
    v
}

/// The request body of a registration or a check: `schema`, `schemaType`, `references`.
fn body(bytes: &Bytes) -> Result<(SchemaType, String), Response> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| error(42201, format!("the body is not JSON: {e}")))?;
    let text = value["schema"].as_str().ok_or_else(|| error(42201, "the body has no \"schema\" string"))?;
    if value["references"].as_array().is_some_and(|r| !r.is_empty()) {
        return Err(error(42201, "schema references are not supported by weir's registry"));
    }
    let ty = SchemaType::parse(value["schemaType"].as_str()).map_err(|e| error(42201, e))?;
    Ok((ty, text.to_string()))
}

/// A version as the path names it: a number, `latest` or `-1`.
fn pick(versions: &[Registered], subject: &str, version: &str) -> Result<Registered, Response> {
    if versions.is_empty() {
        return Err(error(40401, format!("Subject '{subject}' not found.")));
    }
    let wanted = match version {
        "latest" | "-1" => versions.last().map(|v| v.version),
        n => Some(n.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| {
            error(
                42202,
                format!("The specified version '{n}' is not a valid version id: use a positive integer or \"latest\""),
            )
        })?),
    };
    versions
        .iter()
        .find(|v| Some(v.version) == wanted)
        .cloned()
        .ok_or_else(|| error(40402, format!("Version {version} not found.")))
}

async fn subjects(State(slot): State<Slot>) -> Response {
    with(slot, |r| match r.subjects() {
        Ok(subjects) => reply(StatusCode::OK, json!(subjects)),
        Err(e) => failed(e),
    })
    .await
}

async fn versions(State(slot): State<Slot>, Path(subject): Path<String>) -> Response {
    with(slot, move |r| match r.versions(&subject) {
        Ok(v) if v.is_empty() => error(40401, format!("Subject '{subject}' not found.")),
        Ok(v) => reply(StatusCode::OK, json!(v.iter().map(|v| v.version).collect::<Vec<_>>())),
        Err(e) => failed(e),
    })
    .await
}

async fn version(State(slot): State<Slot>, Path((subject, version)): Path<(String, String)>) -> Response {
    with(slot, move |r| match r.versions(&subject) {
        Ok(all) => pick(&all, &subject, &version).map_or_else(|e| e, |v| reply(StatusCode::OK, schema_json(&v))),
        Err(e) => failed(e),
    })
    .await
}

async fn version_text(State(slot): State<Slot>, Path((subject, version)): Path<(String, String)>) -> Response {
    with(slot, move |r| match r.versions(&subject) {
        Ok(all) => pick(&all, &subject, &version).map_or_else(|e| e, |v| reply(StatusCode::OK, raw(&v.text))),
        Err(e) => failed(e),
    })
    .await
}

fn raw(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| json!(text))
}

async fn register(State(slot): State<Slot>, Path(subject): Path<String>, bytes: Bytes) -> Response {
    let (ty, text) = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return e,
    };
    with(slot, move |r| match r.register(&subject, ty, &text) {
        Ok(v) => {
            tracing::info!(subject, version = v.version, id = v.id, "schema registered");
            reply(StatusCode::OK, json!({"id": v.id}))
        }
        Err(Refusal::Invalid(e)) => error(42201, format!("Invalid schema: {e}")),
        Err(Refusal::Incompatible(e)) => error(409, e),
        Err(Refusal::Failed(e)) => failed(e),
    })
    .await
}

/// `POST /subjects/{subject}`: is this schema registered under the subject, and as what.
async fn lookup(State(slot): State<Slot>, Path(subject): Path<String>, bytes: Bytes) -> Response {
    let (ty, text) = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return e,
    };
    with(slot, move |r| {
        let parsed = match super::parse(ty, &text) {
            Ok(p) => p,
            Err(e) => return error(42201, format!("Invalid schema: {e}")),
        };
        match r.versions(&subject) {
            Ok(all) if all.is_empty() => error(40401, format!("Subject '{subject}' not found.")),
            Ok(all) => match all.iter().find(|v| v.ty == ty && v.fingerprint == parsed.fingerprint) {
                Some(v) => reply(StatusCode::OK, schema_json(v)),
                None => error(40403, "Schema not found"),
            },
            Err(e) => failed(e),
        }
    })
    .await
}

/// Answers with `answer` of the schema the path's id names, or 40403.
async fn with_schema<F>(slot: Slot, id: String, answer: F) -> Response
where
    F: FnOnce(&Registered) -> Response + Send + 'static,
{
    let Ok(id) = id.parse::<u32>() else { return error(40403, format!("Schema {id} not found")) };
    with(slot, move |r| match r.by_id(id) {
        Ok(Some(v)) => answer(&v),
        Ok(None) => error(40403, format!("Schema {id} not found")),
        Err(e) => failed(e),
    })
    .await
}

async fn by_id(State(slot): State<Slot>, Path(id): Path<String>) -> Response {
    with_schema(slot, id, |v| {
        let mut body = json!({"schema": v.text});
        if v.ty != SchemaType::Avro {
            body["schemaType"] = json!(v.ty.name());
        }
        reply(StatusCode::OK, body)
    })
    .await
}

async fn by_id_text(State(slot): State<Slot>, Path(id): Path<String>) -> Response {
    with_schema(slot, id, |v| reply(StatusCode::OK, raw(&v.text))).await
}

async fn id_versions(State(slot): State<Slot>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u32>() else { return error(40403, format!("Schema {id} not found")) };
    with(slot, move |r| match r.uses_of(id) {
        Ok(uses) if uses.is_empty() => error(40403, format!("Schema {id} not found")),
        Ok(uses) => reply(
            StatusCode::OK,
            json!(uses.iter().map(|u| json!({"subject": u.subject, "version": u.version})).collect::<Vec<_>>()),
        ),
        Err(e) => failed(e),
    })
    .await
}

fn tested(result: Result<Vec<String>, Refusal>, verbose: bool) -> Response {
    match result {
        Ok(messages) => {
            let mut body = json!({"is_compatible": messages.is_empty()});
            if verbose {
                body["messages"] = json!(messages);
            }
            reply(StatusCode::OK, body)
        }
        Err(Refusal::Invalid(e)) => error(42201, format!("Invalid schema: {e}")),
        Err(Refusal::Incompatible(e)) => error(409, e),
        Err(Refusal::Failed(e)) => failed(e),
    }
}

fn verbose(query: &HashMap<String, String>) -> bool {
    query.get("verbose").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

async fn test_one(
    State(slot): State<Slot>,
    Path((subject, version)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Response {
    let (ty, text) = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return e,
    };
    with(slot, move |r| {
        let all = match r.versions(&subject) {
            Ok(all) => all,
            Err(e) => return failed(e),
        };
        let old = match pick(&all, &subject, &version) {
            Ok(v) => v,
            Err(e) => return e,
        };
        tested(r.test(&subject, ty, &text, Some(old.version)), verbose(&query))
    })
    .await
}

async fn test_all(
    State(slot): State<Slot>,
    Path(subject): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Response {
    let (ty, text) = match body(&bytes) {
        Ok(b) => b,
        Err(e) => return e,
    };
    with(slot, move |r| tested(r.test(&subject, ty, &text, None), verbose(&query))).await
}

async fn global_level(State(slot): State<Slot>) -> Response {
    with(slot, |r| match r.level(None) {
        Ok(level) => reply(StatusCode::OK, json!({"compatibilityLevel": level.unwrap_or(DEFAULT_LEVEL).name()})),
        Err(e) => failed(e),
    })
    .await
}

async fn subject_level(
    State(slot): State<Slot>,
    Path(subject): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let to_global = query.get("defaultToGlobal").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    with(slot, move |r| match (r.level(Some(&subject)), to_global) {
        (Ok(Some(level)), _) => reply(StatusCode::OK, json!({"compatibilityLevel": level.name()})),
        (Ok(None), true) => match r.level(None) {
            Ok(level) => reply(StatusCode::OK, json!({"compatibilityLevel": level.unwrap_or(DEFAULT_LEVEL).name()})),
            Err(e) => failed(e),
        },
        (Ok(None), false) => {
            error(40408, format!("Subject '{subject}' does not have subject-level compatibility configured"))
        }
        (Err(e), _) => failed(e),
    })
    .await
}

fn level_body(bytes: &Bytes) -> Result<Level, Response> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| error(42203, format!("the body is not JSON: {e}")))?;
    let name = value["compatibility"].as_str().or(value["compatibilityLevel"].as_str());
    let name = name.ok_or_else(|| error(42203, "the body has no \"compatibility\""))?;
    Level::parse(name).map_err(|e| error(42203, e))
}

async fn set_global_level(State(slot): State<Slot>, bytes: Bytes) -> Response {
    let level = match level_body(&bytes) {
        Ok(l) => l,
        Err(e) => return e,
    };
    with(slot, move |r| match r.set_level(None, level) {
        Ok(()) => reply(StatusCode::OK, json!({"compatibility": level.name()})),
        Err(e) => failed(e),
    })
    .await
}

async fn set_subject_level(State(slot): State<Slot>, Path(subject): Path<String>, bytes: Bytes) -> Response {
    let level = match level_body(&bytes) {
        Ok(l) => l,
        Err(e) => return e,
    };
    with(slot, move |r| match r.set_level(Some(&subject), level) {
        Ok(()) => reply(StatusCode::OK, json!({"compatibility": level.name()})),
        Err(e) => failed(e),
    })
    .await
}

async fn clear_subject_level(State(slot): State<Slot>, Path(subject): Path<String>) -> Response {
    with(slot, move |r| match r.clear_level(&subject) {
        Ok(Some(level)) => reply(StatusCode::OK, json!({"compatibilityLevel": level.name()})),
        Ok(None) => error(40408, format!("Subject '{subject}' does not have subject-level compatibility configured")),
        Err(e) => failed(e),
    })
    .await
}
