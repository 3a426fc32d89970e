//! `POST /ingest/PIPELINE`: records pushed over HTTP into the pipeline's inbox
//! (`[source] kind = "http"`, see `source/inbox.rs`). The body is JSON lines or a JSON
//! array, one record each. The answer comes once the records are committed: 200 with the
//! first record's offset; the same `Idempotency-Key` again gets the first answer and
//! stores nothing; a record that is not JSON is a 400 naming it, and nothing of the
//! request is stored; 429 with `Retry-After` while too many records wait.

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::de::{SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::source::{Inbox, Stored};

/// The largest request body.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A running pipeline's inbox, as the endpoint writes it.
pub struct Ingest {
    /// The pipeline's name, the path's last part.
    pub pipeline: String,
    /// How many records may wait unread before requests get 429.
    pub max_waiting: i64,
    /// The inbox, over a connection of its own.
    pub inbox: Mutex<Box<dyn Inbox>>,
}

/// Where the pipeline puts its inbox once it has opened it.
pub type Slot = Arc<OnceLock<Arc<Ingest>>>;

/// The ingest route, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>(slot: Slot) -> Router<S> {
    Router::new()
        .route("/ingest/{pipeline}", post(move |p, h, b| ingest(slot.clone(), p, h, b)))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

fn answer(code: StatusCode, body: serde_json::Value) -> Response {
    (code, Json(body)).into_response()
}

async fn ingest(slot: Slot, Path(pipeline): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(ingest) = slot.get().filter(|i| i.pipeline == pipeline).cloned() else {
        let error = format!("no pipeline {pipeline:?} takes HTTP ingest here");
        return answer(StatusCode::NOT_FOUND, serde_json::json!({ "error": error }));
    };
    let records = match records(&body) {
        Ok(records) => records,
        Err(error) => return answer(StatusCode::BAD_REQUEST, serde_json::json!({ "error": error })),
    };
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let stored = tokio::task::spawn_blocking(move || {
        let mut inbox = ingest.inbox.lock().expect("inbox lock");
        inbox.store(&ingest.pipeline, key.as_deref(), &body, &records, ingest.max_waiting)
    })
    .await;
    match stored {
        Ok(Ok(Stored::Accepted { first, records })) => {
            answer(StatusCode::OK, serde_json::json!({ "records": records, "first_offset": first, "duplicate": false }))
        }
        Ok(Ok(Stored::Duplicate { first, records })) => {
            answer(StatusCode::OK, serde_json::json!({ "records": records, "first_offset": first, "duplicate": true }))
        }
        Ok(Ok(Stored::KeyReused)) => answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({ "error": "this Idempotency-Key came before with another body" }),
        ),
        Ok(Ok(Stored::Busy { waiting })) => {
            let error = format!("the pipeline lags: {waiting} records wait to be read; retry later");
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], Json(serde_json::json!({ "error": error })))
                .into_response()
        }
        // The database out of reach: nothing was stored, and the client may retry.
        Ok(Err(e)) => answer(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "error": format!("{e:#}") })),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, serde_json::json!({ "error": e.to_string() })),
    }
}

/// The records of a body: the elements of a JSON array, or the non-empty lines of JSON
/// lines, each as sent. The error names the first record that is not JSON.
pub fn records(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace()).ok_or("the body holds no records")?;
    if body[start] == b'[' {
        let mut de = serde_json::Deserializer::from_slice(body);
        let records = serde::Deserializer::deserialize_seq(&mut de, Elements).map_err(|e| e.to_string())?;
        de.end().map_err(|e| format!("after the array: {e}"))?;
        return Ok(records);
    }
    let mut records = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Err(e) = serde_json::from_slice::<&RawValue>(line) {
            return Err(format!("record {} (line {}): {e}", records.len() + 1, i + 1));
        }
        records.push(line.to_vec());
    }
    if records.is_empty() {
        return Err("the body holds no records".into());
    }
    Ok(records)
}

/// A JSON array's elements as sent, the failing one named by its place.
struct Elements;

impl<'de> Visitor<'de> for Elements {
    type Value = Vec<Vec<u8>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        loop {
            match seq.next_element::<&RawValue>() {
                Ok(Some(record)) => out.push(record.get().as_bytes().to_vec()),
                Ok(None) => break,
                Err(e) => return Err(serde::de::Error::custom(format!("record {}: {e}", out.len() + 1))),
            }
        }
        if out.is_empty() {
            return Err(serde::de::Error::custom("the body holds no records"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::records;

    #[test]
    fn a_body_is_json_lines_or_an_array_and_the_bad_record_is_named() {
        let lines = records(b"{\"a\":1}\n\n{\"a\": 2.50}\r\n").unwrap();
        assert_eq!(lines, vec![b"{\"a\":1}".to_vec(), b"{\"a\": 2.50}".to_vec()]);
        let array = records(b" [ {\"a\":1}, {\"b\": [1, 2]} ] ").unwrap();
        assert_eq!(array, vec![b"{\"a\":1}".to_vec(), b"{\"b\": [1, 2]}".to_vec()]);
        assert!(records(b"{\"a\":1}\n{\"a\":\n").unwrap_err().starts_with("record 2 (line 2)"));
        assert!(records(b"[{\"a\":1}, {\"a\" 2}]").unwrap_err().starts_with("record 2:"));
        assert!(records(b"[{\"a\":1}] x").unwrap_err().starts_with("after the array"));
        assert!(records(b"  \n").is_err() && records(b"[]").is_err());
    }
}
