//! A thread that takes a Kafka source's messages off its queue and copies them into
//! batches, so that the run loop's thread spends its time on the plugins. Taking messages
//! from librdkafka, copying them and destroying them cost the loop a fifth of its CPU in
//! the Kafka benchmark, on a machine whose other core waited for it.
//!
//! The thread only reads: what is delivered, kept back or dropped is still decided by the
//! source on the loop's thread, in the order the thread read the messages. At most one
//! batch waits between them, so backpressure reaches librdkafka as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rdkafka::bindings as rd;
use weir_sdk::RawBatch;

use super::kafka_queue::{consume, QueueHandle};

/// What the thread read in one go: the messages, in order, and the consumption errors
/// librdkafka reported in their place.
#[derive(Default)]
pub(super) struct Chunk {
    pub records: RawBatch,
    pub errors: Vec<rd::rd_kafka_resp_err_t>,
}

/// The reading thread. Dropping it stops the thread and discards what it read.
pub(super) struct Reader {
    queue: QueueHandle,
    stop: Arc<AtomicBool>,
    chunks: Receiver<Result<Chunk, String>>,
    spares: Sender<RawBatch>,
    thread: Option<JoinHandle<()>>,
}

/// How long the thread waits for a message before checking whether to stop.
const WAIT: Duration = Duration::from_millis(100);

impl Reader {
    /// Starts reading `queue`, up to `max` messages per chunk. The queue must outlive the
    /// reader.
    pub(super) fn start(queue: QueueHandle, max: usize) -> Result<Reader> {
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, chunks) = mpsc::sync_channel(1);
        let (spares, spare) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("weir-kafka".into())
            .spawn({
                let stop = stop.clone();
                move || read(queue, max.max(1), &stop, &sender, &spare)
            })
            .context("starting the Kafka reader thread")?;
        Ok(Reader { queue, stop, chunks, spares, thread: Some(thread) })
    }

    /// The next chunk, waiting up to `wait` for it.
    pub(super) fn next(&self, wait: Duration) -> Result<Option<Chunk>> {
        let got = if wait.is_zero() {
            self.chunks.try_recv().map_err(|e| matches!(e, TryRecvError::Disconnected))
        } else {
            self.chunks.recv_timeout(wait).map_err(|e| matches!(e, RecvTimeoutError::Disconnected))
        };
        match got {
            Ok(chunk) => chunk.map(Some).map_err(|e| anyhow!(e)),
            Err(false) => Ok(None),
            Err(true) => Err(anyhow!("the Kafka reader thread stopped")),
        }
    }

    /// Hands an emptied batch back for the thread to fill again.
    pub(super) fn recycle(&self, records: RawBatch) {
        let _ = self.spares.send(records);
    }

    /// Stops the thread and returns what it read and the loop has not taken, in order.
    pub(super) fn stop(mut self) -> Result<Vec<Chunk>> {
        self.stop.store(true, Ordering::SeqCst);
        self.queue.wake();
        // The thread may be blocked handing over a chunk: take them until it has gone.
        let mut left = Vec::new();
        while let Ok(chunk) = self.chunks.recv() {
            left.push(chunk.map_err(|e| anyhow!(e))?);
        }
        if let Some(thread) = self.thread.take() {
            thread.join().map_err(|_| anyhow!("the Kafka reader thread panicked"))?;
        }
        Ok(left)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            self.queue.wake();
            while self.chunks.recv().is_ok() {}
            let _ = thread.join();
        }
    }
}

fn read(
    queue: QueueHandle,
    max: usize,
    stop: &AtomicBool,
    chunks: &SyncSender<Result<Chunk, String>>,
    spares: &Receiver<RawBatch>,
) {
    let mut slots = Vec::new();
    let mut chunk = Chunk::default();
    while !stop.load(Ordering::SeqCst) {
        let Chunk { records, errors } = &mut chunk;
        let taken = consume(queue, &mut slots, WAIT, max, |m| match m.error {
            None => records.push(m.payload, m.key, m.timestamp, m.partition, m.offset),
            Some(code) => errors.push(code),
        });
        match taken {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) => {
                let _ = chunks.send(Err(format!("{e:#}")));
                return;
            }
        }
        let mut next = spares.try_recv().unwrap_or_default();
        next.clear();
        let full = std::mem::replace(&mut chunk, Chunk { records: next, errors: Vec::new() });
        if chunks.send(Ok(full)).is_err() {
            return;
        }
    }
}
