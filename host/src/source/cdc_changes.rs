//! How `cdc.rs` reads, phase by phase: the snapshot's rows, and whole transactions of the
//! table decoded from the slot (peeked over SQL while catching up, streamed after) into
//! `pending` and handed out.

use anyhow::{bail, Context, Result};
use weir_sdk::RawBatch;

use super::cdc::{CdcSource, Permanent, Phase, Txn, AHEAD, CHANGES, DONE, SNAPSHOT};
use super::cdc_setup;
use super::pg_replication::{format_lsn, parse_lsn};
use super::pg_stream::{Frame, Stream};
use super::pgoutput::{self, Message, Op, Relation, Value};

impl CdcSource {
    /// One poll's records, starting (again) first if need be.
    pub(super) fn read(&mut self, max: usize) -> Result<RawBatch> {
        if matches!(self.phase, Phase::Start) {
            self.start()?;
        }
        let mut batch = RawBatch::default();
        match &self.phase {
            Phase::Start => unreachable!("started above"),
            Phase::Snapshot(_) => self.poll_snapshot(max, &mut batch)?,
            &Phase::CatchUp { until, .. } => {
                if self.pending.is_empty() {
                    self.peek(until)?;
                }
                self.take(max, &mut batch);
                if self.pending.is_empty() && self.caught_up {
                    // Every change up to the new snapshot is read for the old one's rows.
                    let Phase::CatchUp { snapshot, .. } = std::mem::replace(&mut self.phase, Phase::Changes) else {
                        unreachable!()
                    };
                    (self.lsn, self.decoded_to) = (until, until);
                    self.phase = Phase::Snapshot(snapshot);
                }
            }
            Phase::Changes => {
                if self.pending_records < max {
                    self.stream(max)?;
                }
                self.take(max, &mut batch);
            }
        }
        Ok(batch)
    }

    pub(super) fn poll_snapshot(&mut self, max: usize, batch: &mut RawBatch) -> Result<()> {
        let Phase::Snapshot(snapshot) = &self.phase else { return Ok(()) };
        let rows = self.runtime.block_on(cdc_setup::fetch(snapshot, max))?;
        let key_at = self.table.columns.iter().position(|c| Some(&c.name) == self.table.key.as_ref());
        let key_at = key_at.context("the key column")?;
        // Every key checked before any row is handed out, so that a refusal moves nothing on.
        let keys: Vec<i64> = rows
            .iter()
            .map(|row| row[key_at].as_deref().and_then(|k| k.parse().ok()).filter(|&k| k < DONE))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                anyhow::Error::new(Permanent(format!(
                    "table {} has a key that is null or not below 2^62, which a snapshot cannot resume by; \
                     set snapshot = false",
                    self.table.shown
                )))
            })?;
        for (row, key) in rows.iter().zip(keys) {
            let values: Vec<Value> =
                row.iter().map(|v| v.as_ref().map_or(Value::Null, |t| Value::Text(t.as_bytes()))).collect();
            let mut payload = Vec::with_capacity(128);
            pgoutput::row_json(&mut payload, Op::Snapshot, snapshot.taken_ms, &self.table.columns, &values);
            batch.push(&payload, b"", -1, SNAPSHOT, key);
            self.next_key = key.saturating_add(1);
        }
        if rows.len() < max {
            eprintln!("read the snapshot of {}; reading its changes from {}", self.table.shown, format_lsn(self.lsn));
            self.next_key = DONE;
            self.phase = Phase::Changes;
        }
        Ok(())
    }

    /// Decodes the slot's changes after `decoded_to` up to `until` into `pending`.
    pub(super) fn peek(&mut self, until: u64) -> Result<()> {
        // Read to `until` whole: a partial read could not tell that nothing is left. (The
        // slot is not streaming yet: a streaming slot is held by its connection.)
        let rows = self.runtime.block_on(self.client.query(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, $2::text::pg_lsn, NULL, \
             'proto_version', '1', 'publication_names', $3)",
            &[&self.slot, &format_lsn(until), &self.publication],
        ));
        let rows = rows.map_err(|e| {
            self.slot_error(&e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()))
        })?;
        self.open = None; // a peek starts at a transaction's beginning
        let mut found = false;
        for row in &rows {
            let (at, data): (String, &[u8]) = (row.get(0), row.get(1));
            found |= self.absorb(parse_lsn(&at)?, data, Some(until))?;
        }
        self.caught_up = !found;
        Ok(())
    }

    /// Takes one message at `lsn` into the transaction it belongs to; a commit moves the
    /// transaction (if it ends after what was decoded, and not after `until`) to `pending`.
    fn absorb(&mut self, lsn: u64, data: &[u8], until: Option<u64>) -> Result<bool> {
        match pgoutput::decode(data).with_context(|| format!("decoding the change at {}", format_lsn(lsn)))? {
            Message::Begin { commit_us } => self.open = Some((commit_us / 1000, Vec::new())),
            Message::Relation(r) => {
                self.relations.insert(r.id, r);
            }
            Message::Change { relation, op, row } if relation == self.table.oid => {
                let Some((commit_ms, records)) = self.open.as_mut() else { bail!("a change outside a transaction") };
                let rel = self.relations.get(&relation).context("a change before its table's description")?;
                let catching_up = matches!(self.phase, Phase::CatchUp { .. });
                if !catching_up || below(rel, self.table.key.as_deref(), &row, self.next_key) {
                    let mut payload = Vec::with_capacity(128);
                    pgoutput::row_json(&mut payload, op, *commit_ms, &rel.columns, &row);
                    records.push((lsn as i64, payload));
                }
            }
            Message::Commit { end_lsn } => {
                let (_, records) = self.open.take().context("a commit without its begin")?;
                if end_lsn > self.decoded_to && until.is_none_or(|u| end_lsn <= u) {
                    self.pending_records += records.len();
                    self.pending.push_back(Txn { end_lsn, records });
                    self.decoded_to = end_lsn;
                    return Ok(true);
                }
            }
            _ => {}
        }
        Ok(false)
    }

    /// Streams changes into `pending` until it holds `max` records or the stream is quiet.
    pub(super) fn stream(&mut self, max: usize) -> Result<()> {
        if self.stream.is_none() {
            let stream = Stream::start(&self.url, &self.slot, &self.publication, self.lsn)
                .map_err(|e| self.slot_error(&format!("{e:#}")))?;
            self.stream = Some(stream);
            self.open = None;
        }
        let mut found = false;
        while self.pending_records < max.max(AHEAD) {
            let frame =
                self.stream.as_mut().expect("started").next().map_err(|e| self.slot_error(&format!("{e:#}")))?;
            match frame {
                Frame::Data { lsn, data } => found |= self.absorb(lsn, &data, None)?,
                // Every transaction ending before `end` was sent, and none is half read: the
                // position moves on to it, and the slot is confirmed there after the next
                // commit. Otherwise the slot would lag the server's WAL whenever other
                // tables are written, and a server shutting down waits for its walsender
                // until the slot is confirmed up to what was sent.
                Frame::Keepalive { end } => {
                    if self.open.is_none() && self.pending.is_empty() && end > self.decoded_to {
                        (self.lsn, self.decoded_to) = (end, end);
                    }
                    // A server shutting down sends keepalives without pause: hand out what
                    // is decoded rather than wait for a quiet moment.
                    break;
                }
                Frame::Quiet => break,
            }
            if found && self.pending_records >= max {
                break;
            }
        }
        self.caught_up = !found;
        Ok(())
    }

    /// An error reading the slot, told as a lost slot where it is one.
    pub(super) fn slot_error(&self, text: &str) -> anyhow::Error {
        // `replication slot "weir_rides" does not exist`; a publication or table gone is not that.
        if text.contains("replication slot") && text.contains("does not exist") {
            self.lost("is gone")
        } else if text.contains("can no longer get changes") || text.contains("invalidated") {
            self.lost("was invalidated: it fell behind max_slot_wal_keep_size")
        } else {
            anyhow::anyhow!("reading changes from slot {}: {text}", self.slot)
        }
    }

    /// Whole transactions from `pending`, at least one, until `max` records.
    pub(super) fn take(&mut self, max: usize, batch: &mut RawBatch) {
        while let Some(txn) = self.pending.front() {
            if !batch.is_empty() && batch.len() + txn.records.len() > max {
                break;
            }
            let txn = self.pending.pop_front().expect("front");
            self.pending_records -= txn.records.len();
            for (offset, payload) in &txn.records {
                batch.push(payload, b"", -1, CHANGES, *offset);
            }
            self.lsn = txn.end_lsn;
        }
    }
}

/// Whether a change's row has a key below `next_key`: one the old snapshot already held.
fn below(rel: &Relation, key: Option<&str>, row: &[Value], next_key: i64) -> bool {
    let at = rel.columns.iter().position(|c| Some(c.name.as_str()) == key);
    match at.and_then(|i| row.get(i)) {
        Some(Value::Text(t)) => {
            std::str::from_utf8(t).ok().and_then(|s| s.parse::<i64>().ok()).is_some_and(|k| k < next_key)
        }
        _ => false,
    }
}
