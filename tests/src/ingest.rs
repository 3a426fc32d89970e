//! A client of `POST /ingest/PIPELINE`, over a plain TCP connection.

use std::io::{Read, Write};

/// An answer: status code (0 when the host did not answer), headers and body.
pub struct Answer {
    pub code: u16,
    pub headers: String,
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Posts `body` to `http://addr/ingest/pipeline`, with `Idempotency-Key: key` if given.
pub fn post(addr: &str, pipeline: &str, key: Option<&str>, body: &[u8]) -> Answer {
    let attempt = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
        let key = key.map(|k| format!("Idempotency-Key: {k}\r\n")).unwrap_or_default();
        // One write: a head and a body in two would wait out Nagle and delayed ACKs.
        let mut request = format!(
            "POST /ingest/{pipeline} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\n{key}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request)?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    };
    let Ok(text) = attempt() else { return Answer { code: 0, headers: String::new(), body: String::new() } };
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Answer { code, headers: head.to_lowercase(), body: body.to_string() }
}

/// The JSON lines of `text` in requests of `size` lines.
pub fn requests(text: &str, size: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines.chunks(size).map(|c| c.join("\n") + "\n").collect()
}
