//! An external schema registry (Confluent's, or another weir's), by URL: the same
//! requests a stock client makes, answers cached by the fetcher.

use std::time::Duration;

use serde_json::Value;

use super::{Registered, SchemaSource, SchemaType};

/// A registry at `url`.
pub struct Remote {
    url: String,
    agent: ureq::Agent,
}

impl Remote {
    pub fn new(url: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build();
        Remote { url: url.trim_end_matches('/').to_string(), agent: config.into() }
    }

    /// GETs `path`: `Ok(None)` on a 404.
    fn get(&self, path: &str) -> Result<Option<Value>, String> {
        let url = format!("{}{path}", self.url);
        let mut response = self
            .agent
            .get(&url)
            .header("Accept", "application/vnd.schemaregistry.v1+json, application/json")
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(|e| format!("GET {url}: {e}"))?;
        match status {
            200 => serde_json::from_str(&body).map(Some).map_err(|e| format!("GET {url}: not JSON: {e}")),
            404 => Ok(None),
            _ => Err(format!("GET {url}: HTTP {status}: {}", body.trim())),
        }
    }

    fn registered(id: u32, subject: String, version: u32, v: &Value) -> Result<Registered, String> {
        let text = v["schema"].as_str().ok_or("a schema without its text")?.to_string();
        let ty = SchemaType::parse(v["schemaType"].as_str())?;
        let fingerprint = super::parse(ty, &text).map(|p| p.fingerprint).unwrap_or(0);
        Ok(Registered { id, subject, version, ty, text, fingerprint, registered_at: String::new() })
    }
}

impl SchemaSource for Remote {
    fn by_id(&self, id: u32) -> Result<Option<Registered>, String> {
        let Some(schema) = self.get(&format!("/schemas/ids/{id}"))? else { return Ok(None) };
        let uses = self.get(&format!("/schemas/ids/{id}/versions"))?.unwrap_or(Value::Null);
        let first = &uses[0];
        let subject = first["subject"].as_str().unwrap_or_default().to_string();
        let version = first["version"].as_u64().unwrap_or(0) as u32;
        Remote::registered(id, subject, version, &schema).map(Some)
    }

    fn by_fingerprint(&self, fingerprint: u64) -> Result<Option<Registered>, String> {
        // The API has no lookup by fingerprint: every subject's versions are read.
        let subjects = self.get("/subjects")?.unwrap_or(Value::Null);
        for subject in subjects.as_array().into_iter().flatten().filter_map(Value::as_str) {
            if let Some(found) = self.versions(subject)?.into_iter().find(|v| v.fingerprint == fingerprint) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    fn versions(&self, subject: &str) -> Result<Vec<Registered>, String> {
        let Some(numbers) = self.get(&format!("/subjects/{subject}/versions"))? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for n in numbers.as_array().into_iter().flatten().filter_map(Value::as_u64) {
            if let Some(v) = self.get(&format!("/subjects/{subject}/versions/{n}"))? {
                let id = v["id"].as_u64().unwrap_or(0) as u32;
                out.push(Remote::registered(id, subject.to_string(), n as u32, &v)?);
            }
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}
