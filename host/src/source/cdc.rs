//! PostgreSQL change capture (`[source] kind = "postgres"`): a table's rows already there,
//! then its inserts, updates and deletes, through a `pgoutput` slot and a publication.
//!
//! Two partitions carry the position. Partition 1 is the snapshot, read in key order: its
//! offset is the next key to read (`DONE` once read). Partition 0 is the change stream: its
//! offset is an LSN, every transaction whose commit ends at or before it read. Batches hold
//! whole transactions, and the slot is advanced only to what a committed checkpoint holds.
//!
//! A snapshot exists only while the connection that exported it is open, so one cut short
//! by a crash cannot be read on. It is finished from a new one, taken with a temporary slot
//! at LSN `L`: first the changes up to `L` are read for the rows already snapshotted (keys
//! below the offset), then the rest of the rows from the new snapshot, then every change
//! after `L`. Each row is then its old snapshot plus its changes, or its new snapshot plus
//! the changes after it: never both, never neither. See docs/DECISIONS.md.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use tokio_postgres::Client;
use weir_sdk::RawBatch;

use super::cdc_setup::{self, Snapshot, Table};
use super::pg_replication::{format_lsn, Replication};
use super::pg_stream::Stream;
use super::pgoutput::Relation;
use super::Source;

/// The snapshot partition's offset once the snapshot is read: 2^62, far above any serial
/// key, and far enough below `i64::MAX` that sums of offsets do not overflow.
pub(super) const DONE: i64 = 1 << 62;
pub(super) const CHANGES: i32 = 0;
pub(super) const SNAPSHOT: i32 = 1;
/// Records decoded ahead of the pipeline, at most (beyond one batch).
pub(super) const AHEAD: usize = 5_000;

/// The first wait before reading again after the source database failed; it doubles to 5 s.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// An error that trying again cannot mend: the slot is gone, moved on, or not weir's.
#[derive(Debug)]
pub(super) struct Permanent(pub(super) String);

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

/// Where the source reads now.
pub(super) enum Phase {
    /// Not yet looked at the slot: a restored checkpoint may still come.
    Start,
    /// Changes up to `until` for the rows already snapshotted, `snapshot` held open for after.
    CatchUp {
        until: u64,
        snapshot: Snapshot,
    },
    Snapshot(Snapshot),
    Changes,
}

/// Records of one transaction: each change's LSN and its row as JSON.
pub(super) type Records = Vec<(i64, Vec<u8>)>;

/// One transaction's records for this table, decoded.
pub(super) struct Txn {
    pub(super) end_lsn: u64,
    pub(super) records: Records,
}

/// The source.
pub struct CdcSource {
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) client: Client,
    pub(super) url: String,
    pub(super) table: Table,
    pub(super) slot: String,
    pub(super) publication: String,
    pub(super) snapshot: bool,
    /// Transactions ending at or before this LSN have been handed out.
    pub(super) lsn: u64,
    /// Snapshot rows with a key below this have been handed out.
    pub(super) next_key: i64,
    pub(super) restored: bool,
    /// `start` has finished once: from then on the positions are this source's own.
    pub(super) started: bool,
    pub(super) phase: Phase,
    pub(super) pending: VecDeque<Txn>,
    /// The end of the last transaction in `pending`.
    pub(super) decoded_to: u64,
    pub(super) relations: HashMap<u32, Relation>,
    /// The slot's confirmed position, as far as this source moved it.
    pub(super) confirmed: u64,
    /// The last peek found nothing new.
    pub(super) caught_up: bool,
    /// Records in `pending`.
    pub(super) pending_records: usize,
    /// The transaction being decoded: its commit time and records so far.
    pub(super) open: Option<(i64, Records)>,
    /// The slot's changes, streamed once the snapshot is read.
    pub(super) stream: Option<Stream>,
    /// Why the source database cannot be read now, while it cannot.
    pub(super) trouble: Option<String>,
    /// When to try again after a failure, and the wait after the next one.
    pub(super) retry_at: Option<Instant>,
    pub(super) backoff: Duration,
}

impl CdcSource {
    /// Connects, checks the table and creates the publication; the slot is looked at on
    /// the first poll, once any checkpoint was restored.
    pub fn open(url: &str, table: &str, slot: &str, publication: &str, snapshot: bool) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (client, table) = runtime.block_on(async {
            let client = cdc_setup::connect(url).await?;
            cdc_setup::logical(&client).await?;
            let table = cdc_setup::table(&client, table).await?;
            if snapshot && table.key.is_none() {
                bail!(
                    "source.snapshot: table {} has no single-column integer primary key, by which weir reads and \
                     resumes a snapshot; set snapshot = false to read only its changes",
                    table.shown
                );
            }
            cdc_setup::publication(&client, publication, &table).await?;
            Ok::<_, anyhow::Error>((client, table))
        })?;
        Ok(CdcSource {
            runtime,
            client,
            url: url.to_string(),
            table,
            slot: slot.to_string(),
            publication: publication.to_string(),
            snapshot,
            lsn: 0,
            next_key: if snapshot { i64::MIN } else { DONE },
            restored: false,
            started: false,
            phase: Phase::Start,
            pending: VecDeque::new(),
            decoded_to: 0,
            relations: HashMap::new(),
            confirmed: 0,
            caught_up: false,
            pending_records: 0,
            open: None,
            stream: None,
            trouble: None,
            retry_at: None,
            backoff: FIRST_BACKOFF,
        })
    }

    /// Finds or creates the slot, and picks up where the checkpoint left off.
    pub(super) fn start(&mut self) -> Result<()> {
        if self.client.is_closed() {
            self.client = self.runtime.block_on(cdc_setup::connect(&self.url))?;
        }
        let state = self.runtime.block_on(cdc_setup::slot(&self.client, &self.slot))?;
        match state {
            Some(s) if s.lost => return Err(self.lost("was invalidated: it fell behind max_slot_wal_keep_size")),
            None if self.restored => return Err(self.lost("is gone")),
            Some(s) if self.restored && s.confirmed > self.lsn => {
                return Err(self.lost(&format!(
                    "was moved on to {} by someone else, past this pipeline's checkpoint",
                    format_lsn(s.confirmed)
                )))
            }
            Some(s) => {
                self.confirmed = s.confirmed;
                if !self.restored {
                    self.lsn = s.confirmed;
                }
            }
            None => {
                // A new slot: its own snapshot is consistent with its first change.
                let mut exporter = Replication::connect(&self.url)?;
                let created = exporter.create_slot(&self.slot, false)?;
                eprintln!("created replication slot {} at {}", self.slot, format_lsn(created.consistent_point));
                (self.lsn, self.confirmed) = (created.consistent_point, created.consistent_point);
                self.phase = if self.snapshot {
                    Phase::Snapshot(self.runtime.block_on(cdc_setup::snapshot(
                        &self.url,
                        &created.snapshot,
                        &exporter,
                        &self.table,
                        self.next_key,
                    ))?)
                } else {
                    Phase::Changes
                };
                (self.decoded_to, self.started) = (self.lsn, true);
                return Ok(());
            }
        }
        self.decoded_to = self.lsn;
        self.phase = if self.next_key == DONE {
            Phase::Changes
        } else {
            let mut exporter = Replication::connect(&self.url)?;
            let temporary = format!("{}_resume", &self.slot[..self.slot.len().min(56)]);
            let created = exporter.create_slot(&temporary, true)?;
            let snapshot = self.runtime.block_on(cdc_setup::snapshot(
                &self.url,
                &created.snapshot,
                &exporter,
                &self.table,
                self.next_key,
            ))?;
            eprintln!(
                "finishing the snapshot of {} from key {} on a new one at {}",
                self.table.shown,
                self.next_key,
                format_lsn(created.consistent_point)
            );
            Phase::CatchUp { until: created.consistent_point, snapshot }
        };
        self.started = true;
        Ok(())
    }

    pub(super) fn lost(&self, how: &str) -> anyhow::Error {
        anyhow::Error::new(Permanent(format!(
            "replication slot {slot} of source table {table} {how}. The changes after this pipeline's checkpoint \
             (LSN {lsn}) went with it, so it cannot go on exactly, and weir will not snapshot the table again by \
             itself: the rows would count twice. To start over from a new snapshot, drop the old slot if it is \
             still there (SELECT pg_drop_replication_slot('{slot}')) and run the pipeline under a new name into \
             a new sink table, or into an empty sink.",
            slot = self.slot,
            table = self.table.shown,
            lsn = format_lsn(self.lsn)
        )))
    }
}

impl Source for CdcSource {
    fn describe(&self) -> String {
        format!("postgres table {} via slot {}", self.table.shown, self.slot)
    }

    fn label(&self, partition: i32) -> String {
        match partition {
            SNAPSHOT => format!("snapshot of {}", self.table.shown),
            _ => format!("changes of {}", self.table.shown),
        }
    }

    fn partitions(&self) -> Vec<i32> {
        if self.snapshot {
            vec![CHANGES, SNAPSHOT]
        } else {
            vec![CHANGES]
        }
    }

    fn seek(&mut self, offsets: &[(i32, i64)]) -> Result<()> {
        for &(partition, offset) in offsets {
            match partition {
                CHANGES => self.lsn = offset as u64,
                SNAPSHOT => self.next_key = offset,
                other => bail!("change capture has partitions 0 (changes) and 1 (snapshot); asked to seek {other}"),
            }
            self.restored = true;
        }
        Ok(())
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        let mut at = vec![(CHANGES, self.lsn as i64)];
        if self.snapshot {
            at.push((SNAPSHOT, self.next_key));
        }
        at
    }

    fn poll(&mut self, max: usize) -> Result<Option<RawBatch>> {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return Ok(Some(RawBatch::default()));
        }
        match self.read(max) {
            Ok(batch) => {
                (self.trouble, self.retry_at, self.backoff) = (None, None, FIRST_BACKOFF);
                Ok(Some(batch))
            }
            Err(e) if e.downcast_ref::<Permanent>().is_some() => Err(e),
            // The database restarting, a connection cut: start again from what was handed
            // out (a snapshot cut short is finished from a new one), after a while.
            Err(e) => {
                let why = format!("the source database: {e:#}");
                tracing::warn!(error = %why, "change capture will try again in {:?}", self.backoff);
                self.trouble = Some(why);
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                // Positions of this run count as restored ones, once it had any: a failure
                // before then (the database down at the first look) starts afresh.
                (self.phase, self.stream, self.open) = (Phase::Start, None, None);
                self.restored |= self.started;
                self.pending.clear();
                self.pending_records = 0;
                Ok(Some(RawBatch::default()))
            }
        }
    }

    fn trouble(&mut self) -> Option<String> {
        self.trouble.clone()
    }

    fn committed(&mut self, positions: &[(i32, i64)]) {
        let Some(&(_, lsn)) = positions.iter().find(|(p, _)| *p == CHANGES) else { return };
        let lsn = lsn as u64;
        if lsn <= self.confirmed {
            return;
        }
        if let Some(stream) = &mut self.stream {
            match stream.confirm(lsn) {
                Ok(()) => self.confirmed = lsn,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "confirming the slot failed; the next checkpoint tries again")
                }
            }
            return;
        }
        let advance = self.runtime.block_on(
            self.client
                .execute("SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)", &[&self.slot, &format_lsn(lsn)]),
        );
        match advance {
            Ok(_) => self.confirmed = lsn,
            Err(e) => {
                tracing::warn!(error = %e, slot = %self.slot, "confirming the slot failed; the next checkpoint tries again")
            }
        }
    }

    fn active(&self) -> Option<Vec<i32>> {
        Some(vec![if matches!(self.phase, Phase::Snapshot(_)) { SNAPSHOT } else { CHANGES }])
    }

    fn drained(&mut self) -> Vec<i32> {
        let mut drained = Vec::new();
        if self.pending.is_empty() && (self.caught_up || !matches!(self.phase, Phase::Changes)) {
            drained.push(CHANGES);
        }
        if self.next_key == DONE {
            drained.push(SNAPSHOT);
        }
        drained
    }
}
