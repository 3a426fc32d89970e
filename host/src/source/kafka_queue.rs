//! The queue a Kafka source's partitions deliver their messages to, apart from the
//! consumer queue, which keeps rebalances and errors.
//!
//! Polling the consumer queue hands over one message per call, and each call reads the
//! clock, wraps an event and allocates; on the benchmark that reading cost a quarter of
//! the run loop (docs/BENCHMARKS.md). From a queue of their own, messages are taken a batch
//! per call, and a rebalance can never be served in passing (librdkafka's batch call would
//! answer it with a forced unassign, since weir takes rebalances as events).

use std::ffi::CStr;
use std::ptr::NonNull;
use std::time::Duration;

use anyhow::{bail, Result};
use rdkafka::bindings as rd;

/// One message taken from the queue, borrowed for the length of a callback.
pub(super) struct Taken<'a> {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, or -1 when the message has none.
    pub timestamp: i64,
    pub payload: &'a [u8],
    pub key: &'a [u8],
    /// A consumption error librdkafka reports in the message's place.
    pub error: Option<rd::rd_kafka_resp_err_t>,
}

/// A queue created on a client; destroyed when dropped, which must happen before the
/// client is (the field order of `KafkaSource` sees to it).
pub(super) struct MessageQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
    client: NonNull<rd::rd_kafka_t>,
    slots: Vec<*mut rd::rd_kafka_message_t>,
}

impl MessageQueue {
    pub(super) fn new(client: *mut rd::rd_kafka_t) -> Result<Self> {
        let client = NonNull::new(client).ok_or_else(|| anyhow::anyhow!("the Kafka client is gone"))?;
        // SAFETY: `client` is a live handle; the queue is ours until `Drop`.
        let queue = NonNull::new(unsafe { rd::rd_kafka_queue_new(client.as_ptr()) });
        let Some(queue) = queue else { bail!("librdkafka could not create a message queue") };
        Ok(MessageQueue { queue, client, slots: Vec::new() })
    }

    /// Routes `partition`'s messages here from now on, through any later (re)assignment:
    /// librdkafka keeps a forwarding the application set when it starts fetching.
    /// Messages the partition fetched while set aside follow, in order.
    pub(super) fn adopt(&self, topic: &CStr, partition: i32) -> Result<()> {
        self.forward(topic, partition, self.queue.as_ptr())
    }

    /// Stops routing `partition`'s messages here without discarding any: what it fetches
    /// from now on waits in its own queue, and librdkafka stops fetching for it once that
    /// queue is full (`queued.max.messages.kbytes`). Its messages already here stay here.
    /// Unlike pausing, which makes librdkafka drop the partition's prefetched messages and
    /// fetch them again, this keeps them.
    pub(super) fn set_aside(&self, topic: &CStr, partition: i32) -> Result<()> {
        self.forward(topic, partition, std::ptr::null_mut())
    }

    fn forward(&self, topic: &CStr, partition: i32, to: *mut rd::rd_kafka_queue_t) -> Result<()> {
        // SAFETY: the handles are live (`to` may be null: no forwarding); the partition
        // queue handle is released at once, the forwarding stays with the partition. On
        // forwarding, librdkafka moves what waits in the partition's queue to the end of `to`.
        unsafe {
            let from = rd::rd_kafka_queue_get_partition(self.client.as_ptr(), topic.as_ptr(), partition);
            if from.is_null() {
                bail!("librdkafka has no queue for partition {partition}");
            }
            rd::rd_kafka_queue_forward(from, to);
            rd::rd_kafka_queue_destroy(from);
        }
        Ok(())
    }

    /// Hands up to `max` messages to `each`: waits up to `wait` for the first, then takes
    /// only what is already there, so a slow stream is not held back to fill a batch.
    pub(super) fn take(&mut self, wait: Duration, max: usize, each: impl FnMut(Taken<'_>)) -> Result<usize> {
        consume(self.handle(), &mut self.slots, wait, max, each)
    }

    /// The queue, for a [`Reader`](super::kafka_reader::Reader) thread: valid until this
    /// `MessageQueue` is dropped, which the reader must not outlive.
    pub(super) fn handle(&self) -> QueueHandle {
        QueueHandle(self.queue)
    }
}

/// A librdkafka queue handle another thread may read: librdkafka's queues are thread-safe.
#[derive(Clone, Copy)]
pub(super) struct QueueHandle(NonNull<rd::rd_kafka_queue_t>);

// SAFETY: librdkafka queues may be used from any thread; the owner keeps the queue alive.
unsafe impl Send for QueueHandle {}

impl QueueHandle {
    /// Wakes a thread waiting on the queue.
    pub(super) fn wake(self) {
        // SAFETY: the queue is alive (see `MessageQueue::handle`).
        unsafe { rd::rd_kafka_queue_yield(self.0.as_ptr()) };
    }
}

/// [`MessageQueue::take`] on `queue`, with `slots` as room for the message pointers.
pub(super) fn consume(
    queue: QueueHandle,
    slots: &mut Vec<*mut rd::rd_kafka_message_t>,
    wait: Duration,
    max: usize,
    mut each: impl FnMut(Taken<'_>),
) -> Result<usize> {
    if max == 0 {
        return Ok(0);
    }
    slots.resize(max, std::ptr::null_mut());
    let mut n = fill(queue, slots, 0, 0, max)?;
    if n == 0 && !wait.is_zero() {
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        n = fill(queue, slots, ms, 0, 1)?;
        if n == 1 {
            n += fill(queue, slots, 0, 1, max)?;
        }
    }
    for &message in &slots[..n] {
        // SAFETY: librdkafka returned these messages to us; each is read, then
        // destroyed exactly once, and no slice outlives `each`.
        unsafe {
            let m = &*message;
            let bytes = |ptr: *mut std::ffi::c_void, len: usize| {
                if ptr.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(ptr as *const u8, len)
                }
            };
            let no_error = m.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
            let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
            each(Taken {
                partition: m.partition,
                offset: m.offset,
                timestamp: rd::rd_kafka_message_timestamp(message, &mut kind),
                payload: if no_error { bytes(m.payload, m.len) } else { &[] },
                key: if no_error { bytes(m.key, m.key_len) } else { &[] },
                error: (!no_error).then_some(m.err),
            });
            rd::rd_kafka_message_destroy(message);
        }
    }
    Ok(n)
}

fn fill(
    queue: QueueHandle,
    slots: &mut [*mut rd::rd_kafka_message_t],
    timeout_ms: i32,
    from: usize,
    to: usize,
) -> Result<usize> {
    let room = &mut slots[from..to];
    // SAFETY: `room` has exactly `room.len()` writable slots; the queue is alive.
    let n = unsafe { rd::rd_kafka_consume_batch_queue(queue.0.as_ptr(), timeout_ms, room.as_mut_ptr(), room.len()) };
    if n < 0 {
        bail!("reading from librdkafka's message queue failed");
    }
    Ok(n as usize)
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // SAFETY: created by `rd_kafka_queue_new` and destroyed only here.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}
