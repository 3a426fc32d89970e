//! A slot's changes streamed over a replication connection (`START_REPLICATION`): each
//! change is decoded once, as it is written. Peeking over SQL decodes from the slot's
//! confirmed position every time, and read 20,000 changes a second. The stream is
//! confirmed with standby status updates, only up to what a committed checkpoint holds.
//!
//! Once streaming, the connection speaks the copy-both sub-protocol, whose messages
//! postgres-protocol's parser does not know, so frames are read here.

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::message::frontend;

use super::pg_replication::{format_lsn, Replication};

/// What the stream carries.
pub(super) enum Frame {
    /// A `pgoutput` message at `lsn`.
    Data { lsn: u64, data: Vec<u8> },
    /// A keepalive: the server has decoded (and sent what was published) up to `end`.
    Keepalive { end: u64 },
    /// Nothing arrived within the wait.
    Quiet,
}

/// How often the server hears from weir even when nothing is confirmed (its
/// `wal_sender_timeout` is 60 s by default).
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// A streaming replication connection.
pub(super) struct Stream {
    conn: Replication,
    confirmed: u64,
    last_status: Instant,
}

impl Stream {
    /// Starts streaming `slot` through `publication` from `from` (the server starts at the
    /// slot's confirmed position if that is later).
    pub(super) fn start(url: &str, slot: &str, publication: &str, from: u64) -> Result<Self> {
        let mut conn = Replication::connect(url)?;
        let mut out = BytesMut::new();
        let sql = format!(
            "START_REPLICATION SLOT \"{slot}\" LOGICAL {} (\"proto_version\" '1', \"publication_names\" '\"{}\"')",
            format_lsn(from),
            publication.replace(['"', '\''], "")
        );
        frontend::query(&sql, &mut out)?;
        conn.send(&out)?;
        // CopyBothResponse, or an error; notices and parameter reports may come first.
        loop {
            let (tag, body) = read_frame(&mut conn, false)?.context("the server closed the replication connection")?;
            match tag {
                b'W' => break,
                b'N' | b'S' => {}
                b'E' => bail!("{sql}: {}", error_message(&body)),
                other => bail!("{sql}: unexpected reply {:?}", other as char),
            }
        }
        conn.stream.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(Stream { conn, confirmed: from, last_status: Instant::now() })
    }

    /// The next message, waiting at most about 20 ms.
    pub(super) fn next(&mut self) -> Result<Frame> {
        if self.last_status.elapsed() >= STATUS_EVERY {
            self.status()?;
        }
        loop {
            let Some((tag, mut body)) = read_frame(&mut self.conn, true)? else { return Ok(Frame::Quiet) };
            match tag {
                b'd' if body.first() == Some(&b'w') && body.len() >= 25 => {
                    body.advance(1);
                    let lsn = body.get_u64();
                    body.advance(16); // the WAL end and the send time
                    return Ok(Frame::Data { lsn, data: body.to_vec() });
                }
                // A keepalive; answered at once when the server asks.
                b'd' if body.first() == Some(&b'k') && body.len() >= 18 => {
                    if body[17] == 1 {
                        self.status()?;
                    }
                    return Ok(Frame::Keepalive { end: u64::from_be_bytes(body[1..9].try_into().expect("8 bytes")) });
                }
                b'E' => bail!("{}", error_message(&body)),
                b'c' => bail!("the server ended the replication stream"),
                _ => {}
            }
        }
    }

    /// Confirms every change up to `lsn`: the server may forget the WAL before it.
    pub(super) fn confirm(&mut self, lsn: u64) -> Result<()> {
        self.confirmed = self.confirmed.max(lsn);
        self.status()
    }

    fn status(&mut self) -> Result<()> {
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        let mut body = BytesMut::with_capacity(34);
        body.put_u8(b'r');
        for _ in 0..3 {
            body.put_u64(self.confirmed); // written, flushed, applied
        }
        body.put_i64(micros - 946_684_800_000_000);
        body.put_u8(0); // no reply asked
        let mut out = BytesMut::with_capacity(39);
        out.put_u8(b'd');
        out.put_i32(body.len() as i32 + 4);
        out.extend_from_slice(&body);
        self.conn.send(&out)?;
        self.last_status = Instant::now();
        Ok(())
    }
}

/// One frame, `(tag, body)`; `None` if `waiting` timed out first (or, not `waiting`, if the
/// connection closed).
fn read_frame(conn: &mut Replication, waiting: bool) -> Result<Option<(u8, BytesMut)>> {
    loop {
        if conn.buf.len() >= 5 {
            let len = i32::from_be_bytes(conn.buf[1..5].try_into().expect("4 bytes")) as usize;
            if conn.buf.len() > len {
                let mut frame = conn.buf.split_to(len + 1);
                let tag = frame[0];
                frame.advance(5);
                return Ok(Some((tag, frame)));
            }
        }
        let mut chunk = [0u8; 64 * 1024];
        match conn.stream.read(&mut chunk) {
            Ok(0) if !waiting => return Ok(None),
            Ok(0) => bail!("the server closed the replication connection"),
            Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
            Err(e) if waiting && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
            Err(e) => return Err(e).context("reading the replication stream"),
        }
    }
}

/// The `M` field of an ErrorResponse body.
fn error_message(body: &[u8]) -> String {
    body.split(|&b| b == 0)
        .find(|f| f.first() == Some(&b'M'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_else(|| "an error".into())
}
