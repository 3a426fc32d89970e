//! What librdkafka calls back into: rebalances, recorded for the pipeline to carry out
//! (deferred, so that a revoked partition is checkpointed before it goes), and errors,
//! kept so that readiness can say why nothing arrives.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use super::Rebalance;

/// Records rebalances for the pipeline to carry out, and librdkafka's reports of trouble.
#[derive(Default)]
pub(super) struct GroupContext {
    pub(super) pending: Mutex<VecDeque<Rebalance>>,
    /// While closing there is no pipeline to wait for: let partitions go at once.
    pub(super) closing: AtomicBool,
    /// The last error librdkafka reported (a broker down, a request timed out) and when.
    pub(super) trouble: Mutex<Option<(Instant, String)>>,
}

impl ClientContext for GroupContext {
    /// librdkafka retries by itself; the error is kept so that readiness can say why
    /// nothing arrives.
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "Kafka client error");
        if let Ok(mut trouble) = self.trouble.lock() {
            *trouble = Some((Instant::now(), format!("{error}: {reason}")));
        }
    }
}

/// How long a reported error explains silence: librdkafka reports a failing broker again
/// well within this while it stays unreachable.
pub(super) const TROUBLE_FOR: Duration = Duration::from_secs(15);

impl ConsumerContext for GroupContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let event = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assigned(partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoked(partitions),
            other => {
                tracing::error!(error = ?other, "consumer group rebalance failed; releasing the assignment");
                let _ = consumer.unassign();
                return;
            }
        };
        if self.closing.load(Ordering::SeqCst) {
            let _ = consumer.unassign();
            return;
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.push_back(event);
        }
    }
}
