//! A JSON API served by the tests, for the API source (`[source] kind = "api"`): pages of
//! 100 records at `GET /trips?cursor=N` (`{"data": [...], "next": "N+100"}`, `next` null on
//! the last page, which carries an ETag), behind a bearer token, with faults on demand.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The records served, and what happened.
#[derive(Default)]
pub struct ApiState {
    pub records: Vec<String>,
    /// Cursors whose first request gets a 429 with `Retry-After: 1`.
    pub throttle: Vec<usize>,
    /// Cursors whose first request gets a page that is not JSON.
    pub garble: Vec<usize>,
    /// Every request: when, its cursor, and the status answered.
    pub log: Vec<(Instant, usize, u16)>,
}

/// The server, on a loopback port of its own, for as long as the test runs.
pub struct Api {
    pub url: String,
    pub state: Arc<Mutex<ApiState>>,
}

pub const TOKEN: &str = "s3cret-token";
const PAGE: usize = 100;

impl Api {
    pub fn start(records: Vec<String>) -> Api {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/trips", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ApiState { records, ..ApiState::default() }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                std::thread::spawn(move || answer(stream, &state));
            }
        });
        Api { url, state }
    }

    /// Appends records: the last page grows, then new pages follow.
    pub fn push(&self, records: impl IntoIterator<Item = String>) {
        self.state.lock().unwrap().records.extend(records);
    }

    /// How many answers had `status`.
    pub fn answered(&self, status: u16) -> usize {
        self.state.lock().unwrap().log.iter().filter(|(_, _, s)| *s == status).count()
    }
}

fn answer(stream: std::net::TcpStream, state: &Mutex<ApiState>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let (mut authorized, mut etag) = (false, None);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        let lower = header.to_ascii_lowercase();
        authorized |= lower.trim() == format!("authorization: bearer {}", TOKEN.to_ascii_lowercase());
        if let Some(value) = lower.strip_prefix("if-none-match:") {
            etag = Some(value.trim().to_string());
        }
    }
    let cursor: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.split("cursor=").nth(1))
        .and_then(|c| c.split('&').next()?.parse().ok())
        .unwrap_or(0);
    let mut s = state.lock().unwrap();
    let first_time = !s.log.iter().any(|(_, c, _)| *c == cursor);
    let (status, headers, body) = if !authorized {
        (401, String::new(), "{\"error\": \"no token\"}".to_string())
    } else if first_time && s.throttle.contains(&cursor) {
        (429, "Retry-After: 1\r\n".to_string(), String::new())
    } else if first_time && s.garble.contains(&cursor) {
        (200, String::new(), "<html>upstream busy</html>".to_string())
    } else {
        let end = (cursor + PAGE).min(s.records.len());
        let page = &s.records[cursor.min(end)..end];
        let last = end == s.records.len();
        let tag = format!("\"{cursor}-{}\"", page.len());
        if last && etag.as_deref() == Some(tag.as_str()) {
            (304, format!("ETag: {tag}\r\n"), String::new())
        } else {
            let next = if last { "null".to_string() } else { format!("\"{end}\"") };
            let headers = if last { format!("ETag: {tag}\r\n") } else { String::new() };
            (200, headers, format!("{{\"data\": [{}], \"next\": {next}}}", page.join(",")))
        }
    };
    s.log.push((Instant::now(), cursor, status));
    drop(s);
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    );
}

/// The rides files example reading the API at `url` into `sink`, as `name`, checkpointing
/// every 200 ms, its token from `$API_TOKEN`; written into `dir`.
pub fn api_pipeline(dir: &std::path::Path, url: &str, sink: &str, name: &str) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(crate::services::repo_root().join("examples/rides/pipeline-files.toml")).unwrap();
    let start = text.find("[source]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let source = format!(
        "[source]\nkind = \"api\"\nurl = \"{url}\"\nrecords = \"data\"\ninterval = \"100ms\"\n\
         headers = {{ Authorization = \"Bearer ${{API_TOKEN}}\" }}"
    );
    let text = format!("{}{source}{}", &text[..start], &text[end..])
        .replace("${DATABASE_URL}", sink)
        .replace("name = \"rides-files\"", &format!("name = \"{name}\""))
        .replace("interval = \"1s\"", "interval = \"200ms\"");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `weir run` of `pipeline` until idle for `idle`, with the API token in its environment.
pub fn api_host(pipeline: &std::path::Path, idle: &str, stderr: std::process::Stdio) -> crate::Reaped {
    crate::Reaped(
        std::process::Command::new(crate::weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--quiet", "--no-admin", "--until-idle", idle])
            .env("WEIR_PLUGIN_DIR", crate::plugin_dir())
            .env("API_TOKEN", TOKEN)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}
