//! A Kafka topic read by a consumer group. The group decides which partitions this host
//! reads; where each one starts is decided by the sink, never by Kafka's committed
//! offsets. Rebalances are deferred to the pipeline: the callback only records them, the
//! pipeline checkpoints (on revoke) or restores (on assign), and only then is the
//! assignment changed. librdkafka waits for that call, so a revoked partition is let go
//! only after its checkpoint is in the sink.

use std::collections::{BTreeMap, VecDeque};
use std::mem::ManuallyDrop;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use weir_sdk::RawBatch;

use super::kafka_context::{GroupContext, STATISTICS_MS, TROUBLE_FOR};
use super::kafka_held::Held;
use super::kafka_queue::{MessageQueue, Taken};
use super::kafka_reader::{Chunk, Reader};
use super::{Rebalance, Source};

/// The Kafka source.
pub struct KafkaSource {
    /// Reads `messages` on a thread of its own while the source is polled; stopped (and
    /// started again by the next poll) around whatever must see the queue at rest.
    /// Declared before `messages`, so it stops before the queue goes.
    reader: Option<Reader>,
    /// What the reader read and the source has not routed yet, in order, with how far
    /// into the first chunk routing got.
    unread: VecDeque<Chunk>,
    routed: usize,
    /// Where the assigned partitions' messages arrive. Both are dropped by hand (see
    /// `Drop`): the queue first, then the consumer, whose close may wait on the broker.
    messages: ManuallyDrop<MessageQueue>,
    consumer: ManuallyDrop<BaseConsumer<GroupContext>>,
    topic: String,
    /// The topic for librdkafka's C API.
    topic_c: std::ffi::CString,
    /// The rebalance being carried out, taken from the context's queue.
    current: Option<Rebalance>,
    /// The next offset per assigned partition: just after the last record delivered.
    positions: BTreeMap<i32, i64>,
    /// Partitions held back by watermark alignment, and what was taken for them.
    held: Held,
    /// A delivered batch handed back, to be filled again.
    spare: Option<RawBatch>,
    /// When a poll last delivered records.
    delivered: Option<Instant>,
}

/// Settings weir relies on; user options cannot override them.
const FIXED: [(&str, &str); 3] = [
    // Offsets live in the sink; Kafka's own commits are advisory, written after each checkpoint.
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "false"),
];

impl KafkaSource {
    /// Joins `group` on `brokers` and subscribes to `topic`. `options` are librdkafka
    /// properties, e.g. `fetch.min.bytes`.
    pub fn open(brokers: &str, topic: &str, group: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("fetch.wait.max.ms", "50")
            // What may wait in memory between polls (per partition held back by alignment,
            // too), and per fetch response. The benchmark's trade of throughput for RSS
            // (docs/BENCHMARKS.md): a response is decompressed whole, often to several
            // times its size. A batch larger than this still arrives, alone. librdkafka
            // wants requests no larger than responses, and a consumer's requests are small.
            // The queue must hold more than one decompressed response: librdkafka stops
            // fetching for a partition whose queue is over the limit, so a response that
            // fills it alone stalls reading for `fetch.queue.backoff.ms` after each fetch
            // (1536 KiB with 512 KiB responses read a topic at half the speed).
            .set("queued.max.messages.kbytes", "2048")
            .set("fetch.max.bytes", "262144")
            .set("message.max.bytes", "262144")
            // librdkafka waits a second (its default) before fetching again for a partition
            // whose prefetch queue was full. A partition held back by watermark alignment
            // fills its queue, so each release would stall reading it for that second. While
            // alignment leaves one partition to read, its queue lasts about 10 ms at full
            // speed: a wait as long emptied it before every refill (2 ms: +9% on (b)).
            .set("fetch.queue.backoff.ms", "2")
            .set("statistics.interval.ms", STATISTICS_MS);
        for (key, value) in options {
            if FIXED.iter().any(|(k, _)| k == key) {
                bail!("source.options.{key}: weir sets this itself (offsets are kept in the sink)");
            }
            config.set(key, value);
        }
        for (key, value) in FIXED {
            config.set(key, value);
        }
        let consumer: BaseConsumer<GroupContext> = config
            .create_with_context(GroupContext::default())
            .with_context(|| format!("source: creating a Kafka consumer for {brokers}"))?;
        consumer.subscribe(&[topic]).with_context(|| format!("source.topic {topic:?}: subscribing"))?;
        let topic_c = std::ffi::CString::new(topic).context("source.topic contains a NUL byte")?;
        let messages = MessageQueue::new(consumer.client().native_ptr())?;
        Ok(KafkaSource {
            reader: None,
            unread: VecDeque::new(),
            routed: 0,
            messages: ManuallyDrop::new(messages),
            consumer: ManuallyDrop::new(consumer),
            topic: topic.to_string(),
            topic_c,
            current: None,
            positions: BTreeMap::new(),
            held: Held::default(),
            spare: None,
            delivered: None,
        })
    }

    /// Checks that `brokers` answer and `topic` exists, without joining a group (which
    /// would make running hosts rebalance). Returns the topic's partition count.
    pub fn check(brokers: &str, topic: &str, options: &BTreeMap<String, String>) -> Result<usize> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        for (key, value) in options {
            config.set(key, value);
        }
        let consumer: BaseConsumer = config.create().with_context(|| format!("source.brokers {brokers}"))?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("source.brokers {brokers}: no answer"))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len()),
            _ => bail!("source.topic {topic:?} does not exist on {brokers}"),
        }
    }

    fn list(&self, partitions: &[i32]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(&self.topic, p);
        }
        tpl
    }

    fn cooperative(&self) -> bool {
        matches!(self.consumer.rebalance_protocol(), RebalanceProtocol::Cooperative)
    }

    fn next_pending(&mut self) -> Option<Rebalance> {
        if self.current.is_none() {
            self.current = self.consumer.context().pending.lock().ok()?.pop_front();
        }
        self.current.clone()
    }

    /// Routes the queues of released partitions back to `messages` once what was kept of
    /// them is delivered.
    fn route_back(&mut self) -> Result<()> {
        for p in self.held.take_routable() {
            self.messages.adopt(&self.topic_c, p)?;
        }
        Ok(())
    }

    /// Routes what the reader read into `batch`, up to `max` records: first what is left
    /// from before, then what it reads now, waiting up to `wait` if there is nothing yet.
    fn read(&mut self, wait: Duration, max: usize, batch: &mut RawBatch) -> Result<()> {
        self.route_unread(max, batch);
        if !self.unread.is_empty() {
            return Ok(()); // The next chunk does not fit.
        }
        if self.reader.is_none() {
            self.reader = Some(Reader::start(self.messages.handle(), max)?);
        }
        let mut wait = if batch.is_empty() { wait } else { Duration::ZERO };
        while let Some(chunk) = self.reader.as_ref().map(|r| r.next(wait)).transpose()?.flatten() {
            self.unread.push_back(chunk);
            self.route_unread(max, batch);
            if !self.unread.is_empty() || batch.len() >= max {
                break;
            }
            wait = Duration::ZERO;
        }
        Ok(())
    }

    /// Routes what the reader read before into `batch`, chunk by chunk while each fits in
    /// `max` records. A chunk is split only if `batch` is empty: when batches and chunks
    /// line up, a chunk becomes the batch without a copy (`Held::route_all`).
    fn route_unread(&mut self, max: usize, batch: &mut RawBatch) {
        while let Some(chunk) = self.unread.front() {
            let left = chunk.records.len() - self.routed;
            if !batch.is_empty() && batch.len() + left > max {
                break;
            }
            let Some(chunk) = self.unread.pop_front() else { break };
            self.route_chunk(chunk, max, batch);
        }
    }

    /// Routes a chunk into `batch` up to `max` records; keeps the rest for the next call.
    fn route_chunk(&mut self, mut chunk: Chunk, max: usize, batch: &mut RawBatch) {
        for code in chunk.errors.drain(..) {
            retrying(code.into(), &self.topic);
        }
        let from = std::mem::take(&mut self.routed);
        let to = self.held.route_all(&mut self.positions, batch, &mut chunk.records, from, max);
        if to < chunk.records.len() {
            self.routed = to;
            self.unread.push_front(chunk);
        } else if let Some(reader) = &self.reader {
            reader.recycle(chunk.records);
        }
    }

    /// Stops the reader, keeping what it read for routing: for what must see every
    /// message taken so far (`idle`), or the assignment at rest (`complete`).
    fn stop_reader(&mut self) -> Result<()> {
        if let Some(reader) = self.reader.take() {
            self.unread.extend(reader.stop()?);
        }
        Ok(())
    }

    /// Drops what the reader read of `partitions`: a revoked partition's records are no
    /// longer ours, and a newly assigned one starts where the sink says. librdkafka drops
    /// such records from its queues itself, but these were taken before.
    fn forget_unread(&mut self, partitions: &[i32]) {
        let from = std::mem::take(&mut self.routed);
        for (i, chunk) in self.unread.iter_mut().enumerate() {
            let records = &chunk.records;
            let start = if i == 0 { from } else { 0 };
            let mut kept = RawBatch::default();
            for r in (start..records.len()).filter(|&r| !partitions.contains(&records.partitions[r])) {
                kept.push_from(records, r);
            }
            chunk.records = kept;
        }
    }

    /// Serves what waits on the consumer queue: rebalances (recorded by the context) and
    /// errors. Messages arrive on `messages` instead, but one found here is kept too.
    fn serve_events(&mut self, wait: Duration, batch: &mut RawBatch) -> Result<()> {
        let mut wait = wait;
        while let Some(event) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            match event {
                Ok(m) => {
                    let taken = Taken {
                        partition: m.partition(),
                        offset: m.offset(),
                        timestamp: m.timestamp().to_millis().unwrap_or(-1),
                        payload: m.payload().unwrap_or_default(),
                        key: m.key().unwrap_or_default(),
                        error: None,
                    };
                    self.held.route(&mut self.positions, batch, &taken);
                }
                Err(e) => consumption_error(e, &self.topic)?,
            }
        }
        Ok(())
    }
}

/// librdkafka retries broker errors itself; those are reports, not losses.
fn consumption_error(error: KafkaError, topic: &str) -> Result<()> {
    match error {
        KafkaError::MessageConsumption(code) => {
            retrying(code, topic);
            Ok(())
        }
        e => Err(e).context(format!("source: reading topic {topic}")),
    }
}

fn retrying(code: RDKafkaErrorCode, topic: &str) {
    tracing::warn!(error = %code, topic = %topic, "Kafka consumption error; retrying");
}

impl Source for KafkaSource {
    fn describe(&self) -> String {
        format!("kafka topic {}", self.topic)
    }

    fn partitions(&self) -> Vec<i32> {
        self.positions.keys().copied().collect()
    }

    fn seek(&mut self, _offsets: &[(i32, i64)]) -> Result<()> {
        // Positions come with each assignment (see `complete`).
        Ok(())
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        self.positions.iter().map(|(p, o)| (*p, *o)).collect()
    }

    fn poll(&mut self, max: usize) -> Result<Option<RawBatch>> {
        let mut batch = self.spare.take().unwrap_or_default();
        batch.clear();
        self.serve_events(Duration::ZERO, &mut batch)?;
        if self.next_pending().is_some() {
            return Ok(Some(batch));
        }
        if self.held.deliver(&mut self.positions, &mut batch, max) {
            return Ok(Some(batch));
        }
        self.route_back()?;
        // A rebalance arriving during the wait is served on the next call.
        let wait = if batch.is_empty() { Duration::from_millis(100) } else { Duration::ZERO };
        self.read(wait, max, &mut batch)?;
        if !batch.is_empty() {
            self.delivered = Some(Instant::now());
        }
        Ok(Some(batch))
    }

    fn rebalance(&mut self) -> Option<Rebalance> {
        self.next_pending()
    }

    fn recycle(&mut self, batch: RawBatch) {
        self.spare = Some(batch);
    }

    fn complete(&mut self, offsets: &[(i32, i64)]) -> Result<()> {
        self.stop_reader()?;
        if let Some(Rebalance::Assigned(partitions) | Rebalance::Revoked(partitions)) = &self.current {
            let partitions = partitions.clone();
            self.forget_unread(&partitions);
        }
        match self.current.take() {
            Some(Rebalance::Assigned(partitions)) => {
                let mut tpl = TopicPartitionList::new();
                for p in partitions {
                    self.messages.adopt(&self.topic_c, p)?;
                    let stored = offsets.iter().find(|(q, _)| *q == p).map(|(_, o)| *o);
                    let offset = stored.map_or(Offset::Beginning, Offset::Offset);
                    tpl.add_partition_offset(&self.topic, p, offset)?;
                    self.positions.insert(p, stored.unwrap_or(0));
                }
                if self.cooperative() { self.consumer.incremental_assign(&tpl) } else { self.consumer.assign(&tpl) }
                    .context("assigning Kafka partitions")?;
            }
            Some(Rebalance::Revoked(partitions)) => {
                let mut tpl = TopicPartitionList::new();
                for p in &partitions {
                    self.positions.remove(p);
                    self.held.forget(*p);
                    tpl.add_partition(&self.topic, *p);
                }
                if self.cooperative() {
                    self.consumer.incremental_unassign(&tpl)
                } else {
                    // An eager group revokes everything and assigns afresh afterwards.
                    self.consumer.unassign()
                }
                .context("releasing Kafka partitions")?;
            }
            None => {}
        }
        Ok(())
    }

    fn pause(&mut self, partitions: &[i32]) -> Result<()> {
        let tpl = self.list(partitions);
        self.consumer.pause(&tpl).context("pausing Kafka partitions")
    }

    fn resume(&mut self, partitions: &[i32]) -> Result<()> {
        self.release(partitions)?;
        let tpl = self.list(partitions);
        self.consumer.resume(&tpl).context("resuming Kafka partitions")
    }

    fn hold(&mut self, partitions: &[i32]) -> Result<()> {
        // Not a pause: librdkafka would drop what it prefetched for them (see `set_aside`).
        for &p in partitions {
            if self.held.hold(p) {
                self.messages.set_aside(&self.topic_c, p)?;
            }
        }
        Ok(())
    }

    fn release(&mut self, partitions: &[i32]) -> Result<()> {
        for &p in partitions {
            self.held.release(p);
        }
        self.route_back()
    }

    fn idle(&mut self, wait: Duration) -> Result<()> {
        let all: Vec<i32> = self.positions.keys().copied().collect();
        self.pause(&all)?;
        let before = self.positions.clone();
        let mut fetched = RawBatch::default();
        self.serve_events(wait, &mut fetched)?;
        self.stop_reader()?;
        self.route_unread(usize::MAX, &mut fetched);
        let KafkaSource { messages, positions, held, .. } = self;
        while messages.take(Duration::ZERO, 1024, |m: Taken<'_>| {
            if m.error.is_none() {
                held.route(positions, &mut fetched, &m);
            }
        })? > 0
        {}
        // Whatever was taken but not delivered, before the pause took effect or while
        // held, is left to be read again.
        self.positions = before;
        let mut again = fetched.partitions;
        again.extend(self.held.give_back());
        again.sort_unstable();
        again.dedup();
        for partition in again {
            if let Some(&position) = self.positions.get(&partition) {
                self.consumer
                    .seek(&self.topic, partition, Offset::Offset(position), Duration::from_secs(5))
                    .context("returning a paused partition to its position")?;
            }
        }
        self.route_back()
    }

    fn waits(&self) -> bool {
        true
    }

    fn trouble(&mut self) -> Option<String> {
        let reported = self.consumer.context().trouble.lock().ok().and_then(|t| t.clone());
        if let Some((at, why)) = reported {
            let since = self.delivered.is_some_and(|d| d > at);
            if at.elapsed() < TROUBLE_FOR && !since {
                return Some(format!("cannot reach the Kafka broker: {why}"));
            }
        }
        self.positions.is_empty().then(|| {
            format!("holds none of topic {}'s partitions: waiting for the consumer group to assign some", self.topic)
        })
    }

    fn group_ends(&mut self) -> Option<Result<Vec<(i32, i64, i64)>>> {
        let ask = || {
            let wait = Duration::from_secs(5);
            let metadata = self.consumer.fetch_metadata(Some(&self.topic), wait)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == self.topic)
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            partitions
                .into_iter()
                .map(|p| self.consumer.fetch_watermarks(&self.topic, p, wait).map(|(low, high)| (p, low, high)))
                .collect::<Result<Vec<_>, _>>()
        };
        Some(ask().with_context(|| format!("asking the broker where topic {}'s partitions end", self.topic)))
    }

    fn drained(&mut self) -> Vec<i32> {
        // Only where a fetch has told librdkafka the end: before the first, nothing is known.
        let known_end = |p: i32| cached_high_watermark(&self.consumer, &self.topic_c, p);
        self.positions
            .iter()
            .filter(|(&p, &next)| known_end(p).is_some_and(|high| high <= next))
            .map(|(&p, _)| p)
            .collect()
    }

    fn lags(&mut self) -> Option<Vec<(i32, u64)>> {
        // Cached high watermarks go stale while the broker cannot be reached: unknown, not 0.
        if self.trouble().is_some() {
            return None;
        }
        // The high watermarks librdkafka cached from its last fetches: no broker round trip.
        let mut lags: Vec<(i32, u64)> = self
            .positions
            .iter()
            .map(|(&p, &next)| {
                let high = cached_high_watermark(&self.consumer, &self.topic_c, p).unwrap_or(next);
                (p, (high - next).max(0) as u64)
            })
            .collect();
        lags.sort_unstable();
        Some(lags)
    }

    fn committed(&mut self, positions: &[(i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for &(p, o) in positions {
            if tpl.add_partition_offset(&self.topic, p, Offset::Offset(o)).is_err() {
                return;
            }
        }
        // Advisory only, for lag monitoring by Kafka tools; a failure loses nothing.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "advisory Kafka offset commit failed");
        }
    }
}

/// The high watermark librdkafka last saw for a partition, from its cache: unlike
/// `fetch_watermarks`, no request to the broker, so the run loop may ask every tick.
fn cached_high_watermark<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &std::ffi::CStr,
    partition: i32,
) -> Option<i64> {
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer lives as long as `consumer`; the out-pointers are locals.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// How long closing the consumer may wait for the broker.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.consumer.context().closing.store(true, Ordering::SeqCst);
        let _ = self.consumer.unassign();
        // The reader stops before the queue it reads goes, and the queue before the consumer.
        drop(self.reader.take());
        // SAFETY: neither field is used again: this is the source's drop.
        unsafe { ManuallyDrop::drop(&mut self.messages) };
        let consumer = unsafe { ManuallyDrop::take(&mut self.consumer) };
        // rdkafka's close leaves the group and waits for the broker to answer, for ever if
        // it holds the connection open and answers nothing: a host told to stop hung. The
        // offsets are in the sink, so a close cut short costs only the session timeout
        // before the group hands the partitions on.
        let (closed, wait) = std::sync::mpsc::channel();
        let closing = std::thread::Builder::new().name("kafka-close".into()).spawn(move || {
            drop(consumer);
            let _ = closed.send(());
        });
        if closing.is_ok() && wait.recv_timeout(CLOSE_WAIT).is_err() {
            tracing::warn!(
                "the Kafka consumer did not leave its group within {CLOSE_WAIT:?}: the broker does not answer; \
                 its partitions move on when its session times out"
            );
        }
    }
}
