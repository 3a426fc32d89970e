//! An S3-compatible object store for the Delta output's tests: moto's server (PyPI `moto`,
//! pinned by `cargo xtask test`) on a free loopback port, in memory, with a bucket made for
//! the test; and a TCP relay in front of it that can be cut, for a store out of reach.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::services::free_port;

/// A moto server with one bucket.
pub struct S3 {
    _child: crate::Reaped,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The bucket the test writes to.
    pub bucket: String,
}

impl S3 {
    /// Starts a server and makes the bucket `lake`.
    pub fn start() -> S3 {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 -m moto.server (PyPI moto; `cargo xtask test` installs it)");
        let mut child = crate::Reaped(child);
        crate::services::wait_for_port(port, "moto (pip install 'moto[server]')", &mut child.0);
        let s3 = S3 { _child: child, addr: format!("127.0.0.1:{port}"), bucket: "lake".into() };
        // moto takes unsigned requests: a bare PUT makes the bucket.
        let mut stream = TcpStream::connect(&s3.addr).unwrap();
        write!(stream, "PUT /{} HTTP/1.0\r\nHost: {}\r\nContent-Length: 0\r\n\r\n", s3.bucket, s3.addr).unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "making the bucket: {answer}"
        );
        s3
    }

    /// `s3://BUCKET/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("s3://{}/{path}", self.bucket)
    }

    /// The object store options for a client reaching the store at `addr` (this server, or
    /// a [`Relay`] in front of it): what the pipeline's `[sink.delta] storage` and Python's
    /// `deltalake` take alike.
    pub fn options(addr: &str) -> BTreeMap<String, String> {
        [
            ("aws_endpoint", format!("http://{addr}")),
            ("aws_allow_http", "true".into()),
            ("aws_region", "us-east-1".into()),
            ("aws_access_key_id", "weir-test".into()),
            ("aws_secret_access_key", "weir-test-secret".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `options` as the TOML inline table of `[sink.delta] storage`.
    pub fn toml(options: &BTreeMap<String, String>) -> String {
        let pairs: Vec<String> = options.iter().map(|(k, v)| format!("{k} = {v:?}")).collect();
        format!("{{ {} }}", pairs.join(", "))
    }
}

/// A TCP relay on its own port to `target`. [`Relay::cut`] closes its listener and every
/// connection through it, so clients meet refused connections, as when the store is down;
/// [`Relay::heal`] listens again on the same port.
pub struct Relay {
    /// `127.0.0.1:PORT`, what clients connect to.
    pub addr: String,
    target: String,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    listener: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Relay {
    /// Relays a free port to `target`.
    pub fn start(target: &str) -> Relay {
        let relay = Relay {
            addr: format!("127.0.0.1:{}", free_port()),
            target: target.to_string(),
            up: Arc::new(AtomicBool::new(false)),
            open: Arc::default(),
            listener: Mutex::new(None),
        };
        relay.heal();
        relay
    }

    /// Refuses connections until [`Relay::heal`], and ends those open.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        // The accept loop wakes up to see it is cut, then drops the listener.
        let _ = TcpStream::connect(&self.addr);
        if let Some(thread) = self.listener.lock().unwrap().take() {
            thread.join().unwrap();
        }
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Listens (again) on the relay's port.
    pub fn heal(&self) {
        let listener = TcpListener::bind(&self.addr).unwrap_or_else(|e| panic!("relay on {}: {e}", self.addr));
        self.up.store(true, Ordering::SeqCst);
        let (up, open, target) = (self.up.clone(), self.open.clone(), self.target.clone());
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if !up.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else { continue };
                let mut open = open.lock().unwrap();
                open.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        *self.listener.lock().unwrap() = Some(thread);
    }
}

/// Copies `from` to `to` until either ends.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_secs(600)));
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}
