//! A replication connection to PostgreSQL, only as far as change capture needs it: to
//! create a logical slot with `EXPORT_SNAPSHOT`, whose snapshot is consistent with the
//! slot's first change. tokio-postgres cannot open such a connection (the `replication`
//! startup parameter is not a setting), so this speaks the protocol itself with
//! postgres-protocol's messages and authentication, over a plain socket: a slot is created
//! once, and the changes themselves are read over an ordinary connection.

use std::io::{Read, Write};

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::{backend::Message, frontend};
use tokio_postgres::config::Host;

/// The server's socket, on TCP or a Unix domain socket.
pub(super) enum Socket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    pub(super) fn set_read_timeout(&self, wait: Option<std::time::Duration>) -> std::io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(wait),
            Socket::Unix(s) => s.set_read_timeout(wait),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Unix(s) => s.flush(),
        }
    }
}

/// An open replication connection. While it stays open and idle, the snapshot a slot
/// exported through it can be imported (`SET TRANSACTION SNAPSHOT`); `pg_stream.rs`
/// streams a slot's changes over it.
pub(super) struct Replication {
    pub(super) stream: Socket,
    pub(super) buf: BytesMut,
}

/// A slot just created, and the snapshot consistent with it.
pub(super) struct CreatedSlot {
    /// The LSN from which the slot's changes begin: every transaction that committed
    /// before it is in the snapshot, every later one is a change.
    pub(super) consistent_point: u64,
    /// The snapshot's name, for `SET TRANSACTION SNAPSHOT`.
    pub(super) snapshot: String,
}

impl Replication {
    /// Connects to the database of `url` for logical replication.
    pub(super) fn connect(url: &str) -> Result<Self> {
        let config: tokio_postgres::Config = url.parse().context("parsing the source URL")?;
        if !matches!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable | tokio_postgres::config::SslMode::Prefer
        ) {
            bail!(
                "source.url asks for TLS (sslmode=require), and weir's replication connection speaks no TLS yet: \
                 reach the server over a trusted network or a tunnel, with sslmode=prefer or disable"
            );
        }
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let stream = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => Socket::Tcp(std::net::TcpStream::connect((host.as_str(), port))?),
            Some(Host::Unix(dir)) => {
                Socket::Unix(std::os::unix::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))?)
            }
            None => Socket::Tcp(std::net::TcpStream::connect(("localhost", port))?),
        };
        let user = config.get_user().context("the source URL names no user")?.to_string();
        let dbname = config.get_dbname().unwrap_or(&user).to_string();
        let mut conn = Replication { stream, buf: BytesMut::new() };
        let mut out = BytesMut::new();
        let params = [("user", user.as_str()), ("database", dbname.as_str()), ("replication", "database")];
        frontend::startup_message(params.iter().copied(), &mut out)?;
        conn.send(&out)?;
        conn.authenticate(&user, config.get_password())?;
        conn.until_ready()?;
        Ok(conn)
    }

    /// Creates logical slot `name` for `pgoutput` (`temporary`: dropped when this
    /// connection closes) and exports its snapshot.
    pub(super) fn create_slot(&mut self, name: &str, temporary: bool) -> Result<CreatedSlot> {
        let temp = if temporary { " TEMPORARY" } else { "" };
        let rows = self.query(&format!("CREATE_REPLICATION_SLOT \"{name}\"{temp} LOGICAL pgoutput EXPORT_SNAPSHOT"))?;
        // slot_name, consistent_point, snapshot_name, output_plugin
        let row = rows.first().context("CREATE_REPLICATION_SLOT returned no row")?;
        let field = |i: usize| row.get(i).cloned().flatten().with_context(|| format!("slot reply lacks field {i}"));
        Ok(CreatedSlot { consistent_point: parse_lsn(&field(1)?)?, snapshot: field(2)? })
    }

    fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.send(&out)?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            match self.receive()? {
                Message::DataRow(row) => {
                    let buf = row.buffer();
                    let mut ranges = row.ranges();
                    let mut values = Vec::new();
                    while let Some(r) = FallibleIterator::next(&mut ranges).map_err(|e| anyhow!(e))? {
                        values.push(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()));
                    }
                    rows.push(values);
                }
                Message::ErrorResponse(body) => failed = Some(error_text(body)),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        match failed {
            Some(e) => bail!("{sql}: {e}"),
            None => Ok(rows),
        }
    }

    fn authenticate(&mut self, user: &str, password: Option<&[u8]>) -> Result<()> {
        let need = || password.context("the server asks for a password, and the source URL has none");
        loop {
            let mut out = BytesMut::new();
            match self.receive()? {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => frontend::password_message(need()?, &mut out)?,
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(user.as_bytes(), need()?, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut out)?
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechanisms = body.mechanisms();
                    let mut scram = false;
                    while let Some(m) = FallibleIterator::next(&mut mechanisms)? {
                        scram |= m == sasl::SCRAM_SHA_256;
                    }
                    if !scram {
                        bail!("the server offers no SASL mechanism weir speaks (SCRAM-SHA-256)");
                    }
                    let mut exchange = sasl::ScramSha256::new(need()?, sasl::ChannelBinding::unsupported());
                    frontend::sasl_initial_response(sasl::SCRAM_SHA_256, exchange.message(), &mut out)?;
                    self.send(&out)?;
                    let Message::AuthenticationSaslContinue(body) = self.receive()? else {
                        bail!("the server broke off the SCRAM exchange")
                    };
                    exchange.update(body.data())?;
                    let mut out = BytesMut::new();
                    frontend::sasl_response(exchange.message(), &mut out)?;
                    self.send(&out)?;
                    let Message::AuthenticationSaslFinal(body) = self.receive()? else {
                        bail!("the server refused the password")
                    };
                    exchange.finish(body.data())?;
                    continue;
                }
                Message::ErrorResponse(body) => bail!("{}", error_text(body)),
                _ => bail!("the server asks for an authentication weir does not speak"),
            }
            self.send(&out)?;
        }
    }

    fn until_ready(&mut self) -> Result<()> {
        loop {
            match self.receive()? {
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ErrorResponse(body) => bail!("{}", error_text(body)),
                _ => {}
            }
        }
    }

    pub(super) fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).context("writing to the replication connection")
    }

    fn receive(&mut self) -> Result<Message> {
        loop {
            if let Some(message) = Message::parse(&mut self.buf)? {
                return Ok(message);
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).context("reading from the replication connection")?;
            if n == 0 {
                bail!("the server closed the replication connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Drop for Replication {
    fn drop(&mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.stream.write_all(&out);
    }
}

pub(super) fn error_text(body: postgres_protocol::message::backend::ErrorResponseBody) -> String {
    let mut fields = body.fields();
    let mut message = String::from("error");
    while let Ok(Some(field)) = FallibleIterator::next(&mut fields) {
        if field.type_() == b'M' {
            message = String::from_utf8_lossy(field.value_bytes()).into_owned();
        }
    }
    message
}

/// `X/Y` (two hex halves) as a number.
pub(super) fn parse_lsn(text: &str) -> Result<u64> {
    let (high, low) = text.split_once('/').with_context(|| format!("{text:?} is not an LSN"))?;
    let part = |s: &str| u64::from_str_radix(s, 16).with_context(|| format!("{text:?} is not an LSN"));
    Ok(part(high)? << 32 | part(low)?)
}

/// An LSN as PostgreSQL writes it.
pub(super) fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_read_and_write_as_postgresql_does() {
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert!(parse_lsn("16B374D848").is_err());
    }
}
