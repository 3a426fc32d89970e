//! What librdkafka calls back into: rebalances, recorded for the pipeline to carry out
//! (deferred, so that a revoked partition is checkpointed before it goes), and errors,
//! kept so that readiness can say why nothing arrives, and the client's statistics,
//! which show a broker that holds its connections open but answers nothing (a hung
//! machine, a stopped process): librdkafka reports no error for that, and the lag it
//! knows stays what it was, so the host looked caught up and ready for as long as the
//! broker was gone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
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
        self.report(format!("{error}: {reason}"));
    }

    /// A broker with requests waiting that has sent nothing for `SILENT_FOR` is trouble,
    /// said again at every report while it lasts. (A consumer always has a fetch waiting
    /// on the brokers that lead its partitions, answered within `fetch.wait.max.ms`.)
    fn stats(&self, statistics: Statistics) {
        let silent = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.waitresp_cnt > 0 && b.rxidle >= SILENT_FOR.as_micros() as i64)
            .max_by_key(|b| b.rxidle);
        if let Some(b) = silent {
            let (name, quiet, waiting) = (&b.nodename, b.rxidle / 1_000_000, b.waitresp_cnt);
            // Once as it begins, then every half minute, not at every report.
            if quiet == SILENT_FOR.as_secs() as i64 || quiet % 30 == 0 {
                tracing::warn!(broker = %name, quiet_s = quiet, waiting, "a Kafka broker answers nothing");
            }
            self.report(format!("broker {name} has answered nothing for {quiet} s ({waiting} requests waiting)"));
        }
    }
}

impl GroupContext {
    fn report(&self, why: String) {
        if let Ok(mut trouble) = self.trouble.lock() {
            *trouble = Some((Instant::now(), why));
        }
    }
}

/// How long a broker may leave requests unanswered before it counts as gone; far beyond
/// the 50 ms a fetch waits at most for data.
const SILENT_FOR: Duration = Duration::from_secs(5);

/// How often librdkafka reports its statistics (the broker check above).
pub(super) const STATISTICS_MS: &str = "1000";

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
