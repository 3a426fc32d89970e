//! The quality tables: `weir_quality` (counts per window and source partition, written
//! with the checkpoint that counted them), `weir_sla` (each rule's state, minute by
//! minute) and `weir_anomalies` (window values far from their key's history).
//!
//! A partition's counts are added to its row (`records = records + EXCLUDED.records`),
//! unlike window rows, which are written whole: each increment belongs to the offsets of
//! the checkpoint that carries it, which lands once or not at all (the fence), so no
//! replay adds it twice. The output's counts (`source_partition = -1`) are recounted from
//! the output table in the same transaction, so they are absolute like its rows.

use crate::config::Range;

/// Upper bounds of the event-to-row delay buckets, in seconds; a last bucket holds the rest.
pub const DELAY_BOUNDS_S: [u64; 10] = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600];
/// Buckets, the last one unbounded.
pub const DELAY_BUCKETS: usize = DELAY_BOUNDS_S.len() + 1;

/// The delay bucket columns, in bucket order.
pub fn delay_columns() -> Vec<String> {
    let name = |s: u64| if s.is_multiple_of(60) { format!("delay_le_{}m", s / 60) } else { format!("delay_le_{s}s") };
    DELAY_BOUNDS_S.iter().map(|&s| name(s)).chain(["delay_more".to_string()]).collect()
}

/// The bucket of a delay of `ms`.
pub fn delay_bucket(ms: i64) -> usize {
    DELAY_BOUNDS_S.iter().position(|&s| ms <= (s * 1000) as i64).unwrap_or(DELAY_BOUNDS_S.len())
}

/// The delay at quantile `q` of `buckets`, in ms, interpolated inside its bucket as
/// Prometheus' `histogram_quantile` does; the last bucket answers with its lower bound.
pub fn delay_quantile(buckets: &[i64; DELAY_BUCKETS], q: f64) -> Option<f64> {
    let total: i64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for (i, &n) in buckets.iter().enumerate() {
        let lower = if i == 0 { 0.0 } else { DELAY_BOUNDS_S[i - 1] as f64 * 1000.0 };
        if seen + n as f64 >= rank && n > 0 {
            let Some(&upper) = DELAY_BOUNDS_S.get(i) else { return Some(lower) };
            return Some(lower + (upper as f64 * 1000.0 - lower) * (rank - seen) / n as f64);
        }
        seen += n as f64;
    }
    Some(DELAY_BOUNDS_S[DELAY_BOUNDS_S.len() - 1] as f64 * 1000.0)
}

/// One partition's counts for one quality window, counted since the last checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QualityRow {
    /// The quality window, ms since the epoch.
    pub start: i64,
    /// Its end.
    pub end: i64,
    /// The source partition.
    pub partition: i32,
    /// Records read.
    pub records: i64,
    /// Records that parsed.
    pub complete: i64,
    /// Records a producer's sequence says were sent and never came.
    pub missing: i64,
    /// Records that passed the validators.
    pub accurate: i64,
    /// Accepted records folded into a window on time.
    pub on_time: i64,
    /// Accepted records late for every window they belong to.
    pub late: i64,
    /// On-time records by event-to-row delay.
    pub delays: [i64; DELAY_BUCKETS],
}

/// What the sink recounts of the output: the rows of the windows a checkpoint touched,
/// and how many hold values inside their ranges.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputCheck {
    /// The output columns' ranges.
    pub ranges: Vec<(String, Range)>,
    /// The windows to recount, `(start, end)` in ms.
    pub windows: Vec<(i64, i64)>,
}

impl OutputCheck {
    /// The SQL condition of a valid row; a NULL value has nothing to judge and passes.
    pub(super) fn valid_sql(&self) -> String {
        let mut all = vec!["TRUE".to_string()];
        for (column, range) in &self.ranges {
            let c = super::schema::quote(column);
            if let Some(min) = range.min {
                all.push(format!("({c} IS NULL OR {c} >= {min:?})"));
            }
            if let Some(max) = range.max {
                all.push(format!("({c} IS NULL OR {c} <= {max:?})"));
            }
        }
        all.join(" AND ")
    }
}

/// The quality windows the span of the scores ends with: those with records on time or
/// output rows. A window only bad records reached (placed where their partition stood,
/// or at the wall clock before it stood anywhere) must not move the span.
pub(super) const NEWEST: &str = "(on_time > 0 OR rows_out > 0)";

/// The sums of `weir_quality` over a span of quality windows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QualitySums {
    /// The newest quality window's end, ms.
    pub newest_ms: Option<i64>,
    /// Summed counts (`start`, `end`, `partition` unused).
    pub counts: QualityRow,
    /// Output rows and valid output rows.
    pub rows: i64,
    /// Of them, inside their ranges.
    pub valid: i64,
    /// The newest event time committed (weir_checkpoints), ms.
    pub max_event_ms: Option<i64>,
}

/// A rule's minute as `weir_sla` keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct SlaMinute {
    /// The rule's name; `(up)` for the pipeline's own uptime.
    pub rule: String,
    /// The minute, ms since the epoch.
    pub minute: i64,
    /// Whether the rule held.
    pub ok: bool,
    /// The score then.
    pub value: Option<f64>,
}

/// A rule's record over a span of minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SlaRecord {
    /// Minutes recorded as held.
    pub ok: i64,
    /// Minutes recorded at all.
    pub recorded: i64,
    /// The first minute recorded, ms.
    pub first_ms: Option<i64>,
}

/// A window value far from its key's history.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Anomaly {
    /// The window, ms.
    pub start: i64,
    /// Its end.
    pub end: i64,
    /// The key, as JSON.
    pub key: String,
    /// The output column.
    pub column: String,
    /// Its value (the configured `absent` value when the key had no row).
    pub value: f64,
    /// The median of the key's previous windows.
    pub baseline: f64,
    /// Their spread: 1.4826 × the median absolute deviation (floored).
    pub spread: f64,
    /// `(value - baseline) / spread`.
    pub score: f64,
    /// How many previous windows the baseline is of.
    pub history: i64,
}

/// What the quality scores, rules and anomaly flags read and write outside a checkpoint.
pub trait QualityStore {
    /// The sums over the quality windows that start at most `over_ms` before the newest
    /// one ends, with the newest committed event time.
    fn quality_sums(&mut self, pipeline: &str, over_ms: i64) -> anyhow::Result<QualitySums>;
    /// Records rules' minutes; a minute recorded again holds only if every answer held.
    fn record_minutes(&mut self, pipeline: &str, minutes: &[SlaMinute]) -> anyhow::Result<()>;
    /// A rule's minutes from `since_ms` on.
    fn sla_record(&mut self, pipeline: &str, rule: &str, since_ms: i64) -> anyhow::Result<SlaRecord>;
    /// Stores anomalies; one already stored (a replayed window) stays as it was.
    fn store_anomalies(&mut self, pipeline: &str, anomalies: &[Anomaly]) -> anyhow::Result<()>;
    /// The latest `limit` anomalies, newest window first.
    fn anomalies(&mut self, pipeline: &str, limit: i64) -> anyhow::Result<Vec<Anomaly>>;
}

/// The columns of `weir_quality` after the window bounds and partition, in order.
pub(super) fn count_columns() -> Vec<String> {
    let fixed = ["records", "complete", "missing", "accurate", "on_time", "late"];
    fixed.iter().map(|c| c.to_string()).chain(delay_columns()).collect()
}

/// A row of sums read in `count_columns` order.
pub(super) fn counts_from(v: &[i64]) -> QualityRow {
    let mut delays = [0; DELAY_BUCKETS];
    delays.copy_from_slice(&v[6..6 + DELAY_BUCKETS]);
    QualityRow {
        records: v[0],
        complete: v[1],
        missing: v[2],
        accurate: v[3],
        on_time: v[4],
        late: v[5],
        delays,
        ..Default::default()
    }
}

/// The counts of `row` in `count_columns` order.
pub(super) fn counts_of(row: &QualityRow) -> Vec<i64> {
    let fixed = [row.records, row.complete, row.missing, row.accurate, row.on_time, row.late];
    fixed.iter().chain(&row.delays).copied().collect()
}

/// `weir_quality`, `weir_sla` and `weir_anomalies`; `window` and `int` are the dialect's types.
pub(super) fn tables(window: &str, int: &str, float: &str) -> String {
    let counts: Vec<String> = count_columns().iter().map(|c| format!("    {c} {int} NOT NULL DEFAULT 0,\n")).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS weir_quality (
    pipeline text NOT NULL,
    window_start {window} NOT NULL,
    window_end {window} NOT NULL,
    source_partition integer NOT NULL,
{}    rows_out {int} NOT NULL DEFAULT 0,
    rows_valid {int} NOT NULL DEFAULT 0,
    updated_at {window} NOT NULL,
    PRIMARY KEY (pipeline, window_start, source_partition)
);
CREATE TABLE IF NOT EXISTS weir_sla (
    pipeline text NOT NULL,
    rule text NOT NULL,
    minute {int} NOT NULL,
    ok boolean NOT NULL,
    value {float},
    PRIMARY KEY (pipeline, rule, minute)
);
CREATE TABLE IF NOT EXISTS weir_anomalies (
    pipeline text NOT NULL,
    window_start {window} NOT NULL,
    window_end {window} NOT NULL,
    key text NOT NULL,
    column_name text NOT NULL,
    value {float} NOT NULL,
    baseline {float} NOT NULL,
    spread {float} NOT NULL,
    score {float} NOT NULL,
    history {int} NOT NULL,
    flagged_at {window} NOT NULL,
    PRIMARY KEY (pipeline, window_start, key, column_name)
);
",
        counts.concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_fall_in_their_buckets_and_quantiles_interpolate() {
        assert_eq!(delay_columns()[0], "delay_le_1s");
        assert_eq!(delay_columns()[4], "delay_le_1m");
        assert_eq!(delay_columns().len(), DELAY_BUCKETS);
        assert_eq!(delay_bucket(-5), 0);
        assert_eq!(delay_bucket(1000), 0);
        assert_eq!(delay_bucket(1001), 1);
        assert_eq!(delay_bucket(10_000_000), DELAY_BUCKETS - 1);
        let mut buckets = [0; DELAY_BUCKETS];
        buckets[1] = 100; // all between 1 s and 5 s
        assert_eq!(delay_quantile(&buckets, 0.5), Some(3000.0));
        assert_eq!(delay_quantile(&buckets, 0.99), Some(4960.0));
        buckets[6] = 1; // one between 2 m and 5 m
        assert!(delay_quantile(&buckets, 0.999).unwrap() > 120_000.0);
        assert_eq!(delay_quantile(&[0; DELAY_BUCKETS], 0.5), None);
    }

    #[test]
    fn a_valid_row_is_inside_every_range_and_null_passes() {
        let check =
            OutputCheck { ranges: vec![("fare".into(), Range { min: Some(0.0), max: Some(500.0) })], windows: vec![] };
        assert_eq!(
            check.valid_sql(),
            "TRUE AND (\"fare\" IS NULL OR \"fare\" >= 0.0) AND (\"fare\" IS NULL OR \"fare\" <= 500.0)"
        );
    }
}
