//! The ingest inbox in PostgreSQL (see `inbox.rs`).

use anyhow::{Context, Result};
use tokio_postgres::Client;

use super::inbox::{digest, Inbox, Stored};

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS weir_inbox (id bigserial PRIMARY KEY, pipeline text NOT NULL, body bytea NOT NULL,
  received_ms bigint NOT NULL);
CREATE INDEX IF NOT EXISTS weir_inbox_by_pipeline ON weir_inbox (pipeline, id);
CREATE TABLE IF NOT EXISTS weir_ingest_keys (pipeline text NOT NULL, key text NOT NULL, digest text NOT NULL,
  first_id bigint NOT NULL, records bigint NOT NULL, received_ms bigint NOT NULL, PRIMARY KEY (pipeline, key));
ALTER TABLE weir_inbox ADD COLUMN IF NOT EXISTS reason text;
CREATE TABLE IF NOT EXISTS weir_api_state (pipeline text PRIMARY KEY, state text NOT NULL);";

/// The inbox over one connection of its own.
pub(super) struct PostgresInbox {
    runtime: tokio::runtime::Runtime,
    url: String,
    client: Option<Client>,
}

impl PostgresInbox {
    pub(super) fn open(url: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut inbox = PostgresInbox { runtime, url: url.to_string(), client: None };
        let (runtime, client) = inbox.session()?;
        runtime.block_on(async {
            let tx = client.transaction().await?;
            // As the sink's prepare does: concurrent CREATE … IF NOT EXISTS race.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&0x7765_6972_i64]).await?;
            tx.batch_execute(TABLES).await.context("creating the inbox tables")?;
            tx.commit().await?;
            Ok::<_, anyhow::Error>(())
        })?;
        Ok(inbox)
    }

    /// The connection, made again if it was lost.
    fn session(&mut self) -> Result<(&tokio::runtime::Runtime, &mut Client)> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.runtime.block_on(crate::sink::connect_postgres(&self.url))?);
        }
        Ok((&self.runtime, self.client.as_mut().expect("just connected")))
    }
}

impl Inbox for PostgresInbox {
    fn store(
        &mut self,
        pipeline: &str,
        key: Option<&str>,
        body: &[u8],
        records: &[Vec<u8>],
        max_waiting: i64,
    ) -> Result<Stored> {
        let digest = digest(body);
        let (runtime, client) = self.session()?;
        runtime.block_on(async {
            let tx = client.transaction().await?;
            // Ids drawn and committed one request at a time: see inbox.rs.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("weir-inbox:{pipeline}")]).await?;
            if let Some(key) = key {
                let seen = tx
                    .query_opt(
                        "SELECT digest, first_id, records FROM weir_ingest_keys WHERE pipeline = $1 AND key = $2",
                        &[&pipeline, &key],
                    )
                    .await?;
                if let Some(row) = seen {
                    let (was, first, count): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
                    return Ok(if was == digest {
                        Stored::Duplicate { first, records: count as usize }
                    } else {
                        Stored::KeyReused
                    });
                }
            }
            let waiting: i64 = tx.query_one(super::inbox::WAITING, &[&pipeline]).await?.get(0);
            if waiting > 0 && waiting + records.len() as i64 > max_waiting {
                return Ok(Stored::Busy { waiting });
            }
            let now = crate::pipeline::now_ms();
            let bodies: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            let ids = tx
                .query(
                    "INSERT INTO weir_inbox (pipeline, body, received_ms) SELECT $1, b, $3 FROM unnest($2::bytea[]) \
                     WITH ORDINALITY AS r(b, n) ORDER BY n RETURNING id",
                    &[&pipeline, &bodies, &now],
                )
                .await
                .context("storing the request's records")?;
            let first: i64 = ids.iter().map(|r| r.get::<_, i64>(0)).min().unwrap_or(0);
            if let Some(key) = key {
                tx.execute(
                    "INSERT INTO weir_ingest_keys (pipeline, key, digest, first_id, records, received_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&pipeline, &key, &digest, &first, &(records.len() as i64), &now],
                )
                .await?;
            }
            tx.commit().await.context("committing the request's records")?;
            Ok(Stored::Accepted { first, records: records.len() })
        })
    }

    fn read(&mut self, pipeline: &str, from: i64, max: usize) -> Result<Vec<super::inbox::InboxRecord>> {
        let (runtime, client) = self.session()?;
        let rows = runtime.block_on(client.query(
            "SELECT id, body, reason FROM weir_inbox WHERE pipeline = $1 AND id >= $2 ORDER BY id LIMIT $3",
            &[&pipeline, &from, &(max as i64)],
        ))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    fn store_page(
        &mut self,
        pipeline: &str,
        records: &[Vec<u8>],
        refused: Option<(&[u8], &str)>,
        state: &str,
    ) -> Result<()> {
        let (runtime, client) = self.session()?;
        runtime.block_on(async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("weir-inbox:{pipeline}")]).await?;
            let now = crate::pipeline::now_ms();
            let bodies: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            tx.execute(
                "INSERT INTO weir_inbox (pipeline, body, received_ms) SELECT $1, b, $3 FROM unnest($2::bytea[]) \
                 WITH ORDINALITY AS r(b, n) ORDER BY n",
                &[&pipeline, &bodies, &now],
            )
            .await?;
            if let Some((page, reason)) = refused {
                tx.execute(
                    "INSERT INTO weir_inbox (pipeline, body, received_ms, reason) VALUES ($1, $2, $3, $4)",
                    &[&pipeline, &page, &now, &reason],
                )
                .await?;
            }
            tx.execute(
                "INSERT INTO weir_api_state (pipeline, state) VALUES ($1, $2) \
                 ON CONFLICT (pipeline) DO UPDATE SET state = EXCLUDED.state",
                &[&pipeline, &state],
            )
            .await?;
            tx.commit().await.context("committing a polled page")
        })
    }

    fn page_state(&mut self, pipeline: &str) -> Result<Option<String>> {
        let (runtime, client) = self.session()?;
        let row =
            runtime.block_on(client.query_opt("SELECT state FROM weir_api_state WHERE pipeline = $1", &[&pipeline]))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn waiting(&mut self, pipeline: &str) -> Result<i64> {
        let (runtime, client) = self.session()?;
        Ok(runtime.block_on(client.query_one(super::inbox::WAITING, &[&pipeline]))?.get(0))
    }

    fn forget(&mut self, pipeline: &str, before: i64) -> Result<()> {
        let (runtime, client) = self.session()?;
        runtime.block_on(
            client.execute("DELETE FROM weir_inbox WHERE pipeline = $1 AND id < $2", &[&pipeline, &before]),
        )?;
        Ok(())
    }
}
