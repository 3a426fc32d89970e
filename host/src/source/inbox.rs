//! The HTTP ingest inbox (`[source] kind = "http"`): `POST /ingest/PIPELINE` stores a
//! request's records in `weir_inbox` in the sink's database, in one transaction with its
//! `Idempotency-Key`, and answers only once they are committed; the pipeline reads the
//! inbox in id order as partition 0, each record's id its offset. Rows behind a committed
//! checkpoint are deleted.
//!
//! Ids must become visible in id order, or the reader would pass an id whose transaction
//! commits later and never read it: SQLite has one writer, and in PostgreSQL each request
//! takes a lock of the pipeline's before it draws its ids.

use anyhow::{bail, Context, Result};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use weir_sdk::RawBatch;

use super::{Rejected, Source};

/// What became of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Committed: the first record's offset, and how many.
    Accepted { first: i64, records: usize },
    /// Its key was stored before with the same body: what that request stored.
    Duplicate { first: i64, records: usize },
    /// Its key was stored before with another body.
    KeyReused,
    /// The pipeline lags: this many records wait in the inbox already.
    Busy { waiting: i64 },
}

/// A record of the inbox: its id, its bytes, and why it was refused if it is a page the
/// API poller could not read.
pub type InboxRecord = (i64, Vec<u8>, Option<String>);

/// The inbox tables of one database.
pub trait Inbox: Send {
    /// Stores `records` (with `key`, if given) unless more than `max_waiting` would wait.
    fn store(
        &mut self,
        pipeline: &str,
        key: Option<&str>,
        body: &[u8],
        records: &[Vec<u8>],
        max_waiting: i64,
    ) -> Result<Stored>;
    /// Up to `max` records from offset `from` on, oldest first, each with the reason it was
    /// refused if it is a page the API poller could not read.
    fn read(&mut self, pipeline: &str, from: i64, max: usize) -> Result<Vec<InboxRecord>>;
    /// Stores a polled page's records (or the page itself, refused with a reason) and the
    /// poller's `state` after it, in one transaction.
    fn store_page(
        &mut self,
        pipeline: &str,
        records: &[Vec<u8>],
        refused: Option<(&[u8], &str)>,
        state: &str,
    ) -> Result<()>;
    /// The poller's state as last stored.
    fn page_state(&mut self, pipeline: &str) -> Result<Option<String>>;
    /// Records waiting unread.
    fn waiting(&mut self, pipeline: &str) -> Result<i64>;
    /// Deletes the records before offset `before`.
    fn forget(&mut self, pipeline: &str, before: i64) -> Result<()>;
}

/// Opens the inbox in the database of `url` (`sqlite://PATH` relative to `base`, or PostgreSQL).
pub fn open(url: &str, base: &std::path::Path) -> Result<Box<dyn Inbox>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let conn = rusqlite::Connection::open(base.join(path)).context("opening the inbox")?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // As the sink: a killed process keeps every committed request.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS weir_inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, \
               body BLOB NOT NULL, received_ms INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS weir_inbox_by_pipeline ON weir_inbox (pipeline, id);
             CREATE TABLE IF NOT EXISTS weir_ingest_keys (pipeline TEXT NOT NULL, key TEXT NOT NULL, digest TEXT NOT NULL, \
               first_id INTEGER NOT NULL, records INTEGER NOT NULL, received_ms INTEGER NOT NULL, PRIMARY KEY (pipeline, key));
             CREATE TABLE IF NOT EXISTS weir_api_state (pipeline TEXT PRIMARY KEY, state TEXT NOT NULL);",
        )
        .context("creating the inbox tables")?;
        // Refused pages (the API poller's) carry their reason; inboxes made before lack it.
        let has_reason: bool =
            conn.prepare("SELECT 1 FROM pragma_table_info('weir_inbox') WHERE name = 'reason'")?.exists([])?;
        if !has_reason {
            conn.execute_batch("ALTER TABLE weir_inbox ADD COLUMN reason TEXT")?;
        }
        return Ok(Box::new(SqliteInbox(conn)));
    }
    Ok(Box::new(super::inbox_postgres::PostgresInbox::open(url)?))
}

/// The records not yet behind a committed checkpoint (rows behind one are deleted only
/// now and then).
pub(super) const WAITING: &str = "SELECT count(*) FROM weir_inbox WHERE pipeline = $1 AND id >= coalesce(\
     (SELECT next_offset FROM weir_checkpoints WHERE pipeline = $1 AND source_partition = 0), 0)";

/// A request body's digest, kept with its key so that a key reused for another body is told apart.
pub(super) fn digest(body: &[u8]) -> String {
    format!("{:x}", Sha256::digest(body))
}

struct SqliteInbox(rusqlite::Connection);

impl Inbox for SqliteInbox {
    fn store(
        &mut self,
        pipeline: &str,
        key: Option<&str>,
        body: &[u8],
        records: &[Vec<u8>],
        max_waiting: i64,
    ) -> Result<Stored> {
        let tx = self.0.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let digest = digest(body);
        if let Some(key) = key {
            let seen: Option<(String, i64, i64)> = tx
                .query_row(
                    "SELECT digest, first_id, records FROM weir_ingest_keys WHERE pipeline = ? AND key = ?",
                    params![pipeline, key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            if let Some((was, first, count)) = seen {
                return Ok(if was == digest {
                    Stored::Duplicate { first, records: count as usize }
                } else {
                    Stored::KeyReused
                });
            }
        }
        let waiting: i64 = tx.query_row(WAITING, [pipeline], |r| r.get(0))?;
        if waiting > 0 && waiting + records.len() as i64 > max_waiting {
            return Ok(Stored::Busy { waiting });
        }
        let now = crate::pipeline::now_ms();
        let mut first = None;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO weir_inbox (pipeline, body, received_ms) VALUES (?, ?, ?)")?;
            for record in records {
                insert.execute(params![pipeline, record, now])?;
                first.get_or_insert(tx.last_insert_rowid());
            }
        }
        let first = first.unwrap_or(0);
        if let Some(key) = key {
            tx.execute(
                "INSERT INTO weir_ingest_keys (pipeline, key, digest, first_id, records, received_ms) VALUES (?, ?, ?, ?, ?, ?)",
                params![pipeline, key, digest, first, records.len() as i64, now],
            )?;
        }
        tx.commit().context("committing the request's records")?;
        Ok(Stored::Accepted { first, records: records.len() })
    }

    fn read(&mut self, pipeline: &str, from: i64, max: usize) -> Result<Vec<InboxRecord>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id, body, reason FROM weir_inbox WHERE pipeline = ? AND id >= ? ORDER BY id LIMIT ?",
        )?;
        let rows = stmt.query_map(params![pipeline, from, max as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn store_page(
        &mut self,
        pipeline: &str,
        records: &[Vec<u8>],
        refused: Option<(&[u8], &str)>,
        state: &str,
    ) -> Result<()> {
        let tx = self.0.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = crate::pipeline::now_ms();
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO weir_inbox (pipeline, body, received_ms, reason) VALUES (?, ?, ?, ?)")?;
            for record in records {
                insert.execute(params![pipeline, record, now, None::<String>])?;
            }
            if let Some((page, reason)) = refused {
                insert.execute(params![pipeline, page, now, reason])?;
            }
        }
        tx.execute(
            "INSERT INTO weir_api_state (pipeline, state) VALUES (?, ?) \
             ON CONFLICT (pipeline) DO UPDATE SET state = excluded.state",
            params![pipeline, state],
        )?;
        tx.commit().context("committing a polled page")
    }

    fn page_state(&mut self, pipeline: &str) -> Result<Option<String>> {
        let state = self.0.query_row("SELECT state FROM weir_api_state WHERE pipeline = ?", [pipeline], |r| r.get(0));
        Ok(state.optional()?)
    }

    fn waiting(&mut self, pipeline: &str) -> Result<i64> {
        Ok(self.0.query_row(WAITING, [pipeline], |r| r.get(0))?)
    }

    fn forget(&mut self, pipeline: &str, before: i64) -> Result<()> {
        self.0.execute("DELETE FROM weir_inbox WHERE pipeline = ? AND id < ?", params![pipeline, before])?;
        Ok(())
    }
}

/// The pipeline's side: the inbox read in id order.
pub struct InboxSource {
    inbox: Box<dyn Inbox>,
    pipeline: String,
    /// The next offset (id) to read.
    next: i64,
    forgotten: i64,
    /// Pages the API poller refused, read and not yet taken.
    refused: Vec<Rejected>,
    /// With `kind = "api"`: the thread that fills the inbox, and what it polls.
    poller: Option<(super::api::Poller, String)>,
}

impl InboxSource {
    /// The inbox of `pipeline` in the database of `url`.
    pub fn open(url: &str, base: &std::path::Path, pipeline: &str) -> Result<Self> {
        Ok(InboxSource {
            inbox: open(url, base)?,
            pipeline: pipeline.to_string(),
            next: 0,
            forgotten: 0,
            refused: Vec::new(),
            poller: None,
        })
    }

    /// The inbox of `pipeline`, filled by a thread polling the API of `options`
    /// (`api.rs`) over a connection of its own.
    pub fn polling(url: &str, base: &std::path::Path, pipeline: &str, options: super::api::ApiOptions) -> Result<Self> {
        let mut source = Self::open(url, base, pipeline)?;
        let inbox = open(url, base)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let trouble = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (name, api) = (pipeline.to_string(), options.url.clone());
        {
            let (stop, trouble) = (stop.clone(), trouble.clone());
            std::thread::Builder::new()
                .name("weir-api-poller".into())
                .spawn(move || super::api::poll_forever(inbox, &name, &options, &stop, &trouble))?;
        }
        source.poller = Some((super::api::Poller { stop, trouble }, api));
        Ok(source)
    }
}

impl Source for InboxSource {
    fn describe(&self) -> String {
        match &self.poller {
            // Without the query: a URL's secrets, if any, stay out of the checkpoints.
            Some((_, url)) => {
                format!("api {} through the inbox of {}", url.split('?').next().unwrap_or(url), self.pipeline)
            }
            None => format!("http ingest inbox of {}", self.pipeline),
        }
    }

    fn label(&self, _partition: i32) -> String {
        if self.poller.is_some() { "api pages" } else { "http ingest" }.into()
    }

    fn trouble(&mut self) -> Option<String> {
        self.poller.as_ref().and_then(|(p, _)| p.trouble.lock().expect("trouble lock").clone())
    }

    fn partitions(&self) -> Vec<i32> {
        vec![0]
    }

    fn seek(&mut self, offsets: &[(i32, i64)]) -> Result<()> {
        match offsets {
            [] => Ok(()),
            [(0, next)] => {
                self.next = *next;
                Ok(())
            }
            other => bail!("the ingest inbox has one partition, 0; asked to seek {other:?}"),
        }
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        vec![(0, self.next)]
    }

    fn poll(&mut self, max: usize) -> Result<Option<RawBatch>> {
        let mut batch = RawBatch::default();
        for (id, body, reason) in self.inbox.read(&self.pipeline, self.next, max)? {
            match reason {
                None => batch.push(&body, b"", -1, 0, id),
                Some(reason) => self.refused.push(Rejected { partition: 0, offset: id, raw: body, reason }),
            }
            self.next = id + 1;
        }
        Ok(Some(batch))
    }

    fn rejected(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.refused)
    }

    fn committed(&mut self, positions: &[(i32, i64)]) {
        let Some(&(_, before)) = positions.iter().find(|(p, _)| *p == 0) else { return };
        // In slices, not per checkpoint: a delete per commit would cost more than the rows.
        if before - self.forgotten >= 1_000 {
            match self.inbox.forget(&self.pipeline, before) {
                Ok(()) => self.forgotten = before,
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "forgetting committed inbox records failed"),
            }
        }
    }
}
