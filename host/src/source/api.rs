//! A JSON API polled page by page (`[source] kind = "api"`). A poller thread fetches each
//! page and stores its records in the inbox (`inbox.rs`), in one transaction with its own
//! state: the next page's URL, how many records of a last page were taken, and its ETag.
//! The pipeline reads the inbox as it reads pushed records, so the API's cursor commits
//! with the records it covers and each record's inbox id is its offset: a crash loses no
//! page and repeats none. A page that does not read is stored as a dead letter, once,
//! with its URL, and asked again until it reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::inbox::{digest, Inbox};

/// What the poller is configured with.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    pub url: String,
    pub records: String,
    pub next: String,
    pub cursor_param: String,
    pub headers: Vec<(String, String)>,
    pub interval: Duration,
    pub max_waiting: i64,
}

/// The poller's position, stored with each page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// The page to ask next; the configured URL at first.
    url: Option<String>,
    /// The cursor in it, as the API gave it.
    cursor: Option<String>,
    /// Records of that page already stored: a last page grows in place.
    taken: usize,
    etag: Option<String>,
    /// The digest of the page refused at `url`, so it is a dead letter only once.
    refused: Option<String>,
}

/// One page, read.
struct Page {
    records: Vec<Box<RawValue>>,
    next: Option<String>,
}

/// Runs the poller until `stop`; `trouble` says why it cannot fetch, while it cannot.
pub(super) fn poll_forever(
    mut inbox: Box<dyn Inbox>,
    pipeline: &str,
    options: &ApiOptions,
    stop: &AtomicBool,
    trouble: &Mutex<Option<String>>,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut backoff = Duration::from_millis(100);
    // The stored state, once read: only this thread writes it.
    let mut known = None;
    let say = |why: Option<String>| *trouble.lock().expect("trouble lock") = why;
    while !stop.load(Ordering::SeqCst) {
        let wait = match step(&agent, inbox.as_mut(), pipeline, options, &mut known) {
            Ok(Step::More) => {
                say(None);
                backoff = Duration::from_millis(100);
                Duration::ZERO
            }
            Ok(Step::CaughtUp) => {
                say(None);
                backoff = Duration::from_millis(100);
                options.interval
            }
            Ok(Step::Full) => Duration::from_millis(200),
            Ok(Step::Later(wait, why)) => {
                say(Some(why));
                wait
            }
            Err(e) => {
                known = None; // a failed store leaves it unknown
                let why = format!("{e:#}");
                tracing::warn!(error = %why, "polling the API");
                say(Some(why));
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        // In slices, so that a stop is heard.
        let until = std::time::Instant::now() + wait;
        while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20).min(until - std::time::Instant::now()));
        }
    }
}

enum Step {
    /// A page with a next one: ask at once.
    More,
    /// The last page for now.
    CaughtUp,
    /// The inbox holds `max_waiting` records: the pipeline lags.
    Full,
    /// The API asked to wait (429 or 503 with `Retry-After`), or the page was refused.
    Later(Duration, String),
}

fn step(
    agent: &ureq::Agent,
    inbox: &mut dyn Inbox,
    pipeline: &str,
    options: &ApiOptions,
    known: &mut Option<State>,
) -> Result<Step> {
    if inbox.waiting(pipeline)? >= options.max_waiting {
        return Ok(Step::Full);
    }
    let state = match known.take() {
        Some(state) => state,
        None => match inbox.page_state(pipeline)? {
            Some(text) => serde_json::from_str(&text).context("the stored API state")?,
            None => State::default(),
        },
    };
    *known = Some(state.clone());
    let url = state.url.clone().unwrap_or_else(|| options.url.clone());
    let mut request = agent.get(&url);
    for (name, value) in &options.headers {
        request = request.header(name, value);
    }
    if let Some(etag) = &state.etag {
        request = request.header("If-None-Match", etag);
    }
    let mut response = request.call().with_context(|| format!("asking {url}"))?;
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    match status {
        304 => return Ok(Step::CaughtUp),
        429 | 503 => {
            let wait = header("retry-after").and_then(|v| retry_after(&v)).unwrap_or(Duration::from_secs(1));
            return Ok(Step::Later(wait, format!("the API answered {status} for {url}: waiting {wait:?} as asked")));
        }
        200..=299 => {}
        _ => bail!("the API answered {status} for {url}"),
    }
    let (etag, link) = (header("etag"), header("link"));
    let body =
        response.body_mut().with_config().limit(256 << 20).read_to_vec().with_context(|| format!("reading {url}"))?;
    let page = match read_page(&body, options) {
        Ok(page) => page,
        Err(e) => {
            let cursor = state.cursor.as_deref().map(|c| format!(" (cursor {c:?})")).unwrap_or_default();
            let reason = format!("the page at {url}{cursor} does not read: {e:#}");
            let digest = digest(&body);
            if state.refused.as_deref() != Some(digest.as_str()) {
                let refused = State { refused: Some(digest), ..state.clone() };
                inbox.store_page(pipeline, &[], Some((&body, &reason)), &serde_json::to_string(&refused)?)?;
                *known = Some(refused);
            }
            return Ok(Step::Later(options.interval, reason));
        }
    };
    let cursor = page.next.or_else(|| link.as_deref().and_then(link_next));
    let next = cursor.as_deref().map(|n| next_url(&options.url, &url, n, options));
    let fresh: Vec<Vec<u8>> = page.records.iter().skip(state.taken).map(|r| r.get().as_bytes().to_vec()).collect();
    let after = match &next {
        Some(next) => State { url: Some(next.clone()), cursor, ..State::default() },
        None => State { taken: page.records.len().max(state.taken), etag, refused: None, ..state.clone() },
    };
    if after != state || !fresh.is_empty() {
        inbox.store_page(pipeline, &fresh, None, &serde_json::to_string(&after)?)?;
        *known = Some(after);
    }
    Ok(if next.is_some() { Step::More } else { Step::CaughtUp })
}

/// The records and the next cursor of a page.
fn read_page(body: &[u8], options: &ApiOptions) -> Result<Page> {
    if options.records.is_empty() {
        let records: Vec<Box<RawValue>> = serde_json::from_slice(body).context("not a JSON array")?;
        return Ok(Page { records, next: None });
    }
    // Raw, so that each record reaches the parser byte for byte as the API sent it.
    let object: std::collections::HashMap<String, Box<RawValue>> =
        serde_json::from_slice(body).context("not a JSON object")?;
    let records = object.get(&options.records).with_context(|| format!("no {:?} in the page", options.records))?;
    let records: Vec<Box<RawValue>> = serde_json::from_str(records.get())
        .map_err(|_| anyhow::anyhow!("{:?} is not an array of records", options.records))?;
    let next: Option<serde_json::Value> =
        object.get(&options.next).map(|n| serde_json::from_str(n.get())).transpose()?;
    let next = match next.as_ref() {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(other) => bail!("{:?} is {other}, not a cursor", options.next),
    };
    Ok(Page { records, next })
}

/// The URL of the next page: `next` itself if it is one, else the first URL with the
/// cursor as `cursor_param`.
fn next_url(first: &str, current: &str, next: &str, options: &ApiOptions) -> String {
    if next.starts_with("http://") || next.starts_with("https://") {
        return next.to_string();
    }
    if next.starts_with('/') {
        let origin_end = current.find("://").map(|i| i + 3).and_then(|i| current[i..].find('/').map(|j| i + j));
        return format!("{}{next}", &current[..origin_end.unwrap_or(current.len())]);
    }
    let joint = if first.contains('?') { '&' } else { '?' };
    format!("{first}{joint}{}={}", options.cursor_param, encode(next))
}

/// `Link: <URL>; rel="next"`.
fn link_next(link: &str) -> Option<String> {
    link.split(',').find(|part| part.contains("rel=\"next\"") || part.contains("rel=next")).and_then(|part| {
        let (start, end) = (part.find('<')?, part.find('>')?);
        Some(part[start + 1..end].to_string())
    })
}

/// `Retry-After`: seconds, or an HTTP date; at most an hour.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            httpdate::parse_http_date(value).ok()?.duration_since(std::time::SystemTime::now()).unwrap_or_default()
        }
    };
    Some(wait.min(Duration::from_secs(3600)))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The poller's thread, told to stop when dropped. It is not waited for: a request to a
/// slow API may take up to 30 s, and a page is stored in one transaction or not at all,
/// so a run may end under it.
pub(super) struct Poller {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) trouble: Arc<Mutex<Option<String>>>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(records: &str) -> ApiOptions {
        ApiOptions {
            url: "https://api.example.com/v1/trips?limit=100".into(),
            records: records.into(),
            next: "next".into(),
            cursor_param: "cursor".into(),
            headers: Vec::new(),
            interval: Duration::from_secs(1),
            max_waiting: 10,
        }
    }

    #[test]
    fn pages_read_their_records_and_next_cursor() {
        let page = read_page(br#"{"data": [{"a": 1.50}, {"b": "x"}], "next": "c/2 3"}"#, &options("data")).unwrap();
        let records: Vec<&str> = page.records.iter().map(|r| r.get()).collect();
        assert_eq!(records, [r#"{"a": 1.50}"#, r#"{"b": "x"}"#], "records as sent, byte for byte");
        let o = options("data");
        assert_eq!(
            next_url(&o.url, &o.url, page.next.as_deref().unwrap(), &o),
            "https://api.example.com/v1/trips?limit=100&cursor=c%2F2%203"
        );
        assert_eq!(next_url(&o.url, &o.url, "/v1/trips?page=3", &o), "https://api.example.com/v1/trips?page=3");
        assert!(read_page(br#"{"data": [], "next": null}"#, &o).unwrap().next.is_none());
        assert_eq!(read_page(br#"[{"a":1}]"#, &options("")).unwrap().records.len(), 1);
    }

    #[test]
    fn a_page_that_does_not_read_says_why() {
        let o = options("data");
        let why = |body: &[u8]| format!("{:#}", read_page(body, &o).err().unwrap());
        assert!(why(b"<html>busy</html>").contains("not a JSON object"));
        assert!(why(br#"{"items": []}"#).contains("no \"data\" in the page"));
        assert!(why(br#"{"data": {"a": 1}}"#).contains("not an array of records"));
        assert!(why(br#"{"data": [], "next": [1]}"#).contains("not a cursor"));
    }

    #[test]
    fn link_headers_and_retry_after_read() {
        let link = r#"<https://api.example.com/x?page=2>; rel="next", <https://api.example.com/x?page=9>; rel="last""#;
        assert_eq!(link_next(link).as_deref(), Some("https://api.example.com/x?page=2"));
        assert_eq!(link_next(r#"<https://a/x?page=9>; rel="last""#), None);
        assert_eq!(retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO), "a date passed");
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        assert!(retry_after(&soon).is_some_and(|d| d > Duration::from_secs(27) && d <= Duration::from_secs(30)));
        assert_eq!(retry_after("soon"), None);
    }
}
