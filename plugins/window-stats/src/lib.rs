//! `window-stats`: count, sum, avg, min and max per window and key.
//!
//! ```toml
//! [stages.aggregate]
//! plugin = "window-stats"
//! config.count = "trips"
//! config.metrics = [{ column = "fare", stats = ["avg", "sum", "min", "max"] }]
//! ```
//!
//! Output columns are the count (`count` by default) and one `<stat>_<column>` per
//! stat, e.g. `avg_fare`. Null values are skipped; a stat over no values is null.

mod state;

use serde::Deserialize;
use weir_sdk::{
    Aggregator, AggregatorInfo, BatchBuilder, ColumnDef, ColumnType, ColumnValues, Config, EventBatch, Value,
};

pub use state::{GroupState, MetricState};

/// One statistic.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Stat {
    /// The sum of the values.
    Sum,
    /// The mean of the values.
    Avg,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
}

impl Stat {
    fn name(self) -> &'static str {
        match self {
            Stat::Sum => "sum",
            Stat::Avg => "avg",
            Stat::Min => "min",
            Stat::Max => "max",
        }
    }
}

/// Statistics over one input column.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// The input column; it must be numeric.
    pub column: String,
    /// The column's type: `float64` (default) or `int64`.
    #[serde(rename = "type", default = "default_metric_type")]
    pub ty: String,
    /// The statistics to write.
    pub stats: Vec<Stat>,
}

fn default_metric_type() -> String {
    "float64".into()
}

/// The aggregator's config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowStatsConfig {
    /// The name of the row-count output column.
    #[serde(default = "default_count")]
    pub count: String,
    /// The metrics.
    #[serde(default)]
    pub metrics: Vec<MetricConfig>,
}

fn default_count() -> String {
    "count".into()
}

/// The configured aggregator.
pub struct WindowStats {
    metrics: Vec<Vec<Stat>>,
}

/// The state encoding's version.
pub const STATE_VERSION: u32 = 1;

impl Aggregator for WindowStats {
    type State = GroupState;

    fn init(config: Config) -> Result<(Self, AggregatorInfo), String> {
        let config: WindowStatsConfig = config.parse()?;
        let mut inputs = Vec::new();
        let mut outputs = vec![ColumnDef::new(config.count.clone(), ColumnType::Int64)];
        for (i, metric) in config.metrics.iter().enumerate() {
            let ty = match metric.ty.as_str() {
                "float64" => ColumnType::Float64,
                "int64" => ColumnType::Int64,
                other => return Err(format!("config.metrics[{i}].type: {other:?} is not float64 or int64")),
            };
            if metric.stats.is_empty() {
                return Err(format!("config.metrics[{i}].stats: list at least one of sum, avg, min, max"));
            }
            inputs.push(ColumnDef::nullable(metric.column.clone(), ty));
            for stat in &metric.stats {
                outputs.push(ColumnDef::nullable(format!("{}_{}", stat.name(), metric.column), ColumnType::Float64));
            }
        }
        let plugin = WindowStats { metrics: config.metrics.into_iter().map(|m| m.stats).collect() };
        Ok((plugin, AggregatorInfo { inputs, outputs, state_version: STATE_VERSION }))
    }

    fn fold(&self, state: &mut GroupState, events: &EventBatch, row: usize) {
        state.count += 1;
        self.ensure_metrics(state);
        for (metric, column) in state.metrics.iter_mut().zip(&events.columns) {
            if column.is_valid(row) {
                metric.add(column.values.f64(row).unwrap_or_default());
            }
        }
    }

    /// Column by column: the per-row `fold` would re-match every column's type per row.
    fn fold_batch(&self, states: &mut [GroupState], events: &EventBatch, groups: &[u32]) {
        for &g in groups {
            let state = &mut states[g as usize];
            state.count += 1;
            self.ensure_metrics(state);
        }
        for (m, column) in events.columns.iter().enumerate() {
            let valid = |row: usize| column.is_valid(row);
            match &column.values {
                ColumnValues::Float64(values) => {
                    for (row, (&g, &v)) in groups.iter().zip(values).enumerate() {
                        if valid(row) {
                            states[g as usize].metrics[m].add(v);
                        }
                    }
                }
                other => {
                    for (row, &g) in groups.iter().enumerate() {
                        if valid(row) {
                            states[g as usize].metrics[m].add(other.f64(row).unwrap_or_default());
                        }
                    }
                }
            }
        }
    }

    fn merge(&self, into: &mut GroupState, other: GroupState) {
        into.merge(&other);
    }

    fn emit(&self, state: &GroupState, out: &mut BatchBuilder) -> Result<(), String> {
        let mut row = vec![Value::Int64(state.count as i64)];
        for (m, stats) in self.metrics.iter().enumerate() {
            let metric = state.metrics.get(m).copied().unwrap_or_default();
            for stat in stats {
                row.push(match (metric.n, stat) {
                    (0, _) => Value::Null,
                    (_, Stat::Sum) => Value::Float64(metric.sum),
                    (n, Stat::Avg) => Value::Float64(metric.sum / n as f64),
                    (_, Stat::Min) => Value::Float64(metric.min),
                    (_, Stat::Max) => Value::Float64(metric.max),
                });
            }
        }
        out.push_row(&row)
    }

    fn encode(&self, state: &GroupState) -> Vec<u8> {
        state.encode()
    }

    fn decode(&self, bytes: &[u8]) -> Result<GroupState, String> {
        GroupState::decode(bytes)
    }
}

impl WindowStats {
    fn ensure_metrics(&self, state: &mut GroupState) {
        if state.metrics.len() < self.metrics.len() {
            state.metrics.resize(self.metrics.len(), MetricState::default());
        }
    }
}

weir_sdk::export!(aggregator: WindowStats);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{emit_encoded, fold_encoded, merge_encoded, Column};

    fn stats() -> (WindowStats, AggregatorInfo) {
        let config = r#"{"count":"trips","metrics":[{"column":"fare","stats":["avg","sum","min","max"]}]}"#;
        WindowStats::init(Config::from_json(config)).unwrap()
    }

    #[test]
    fn folds_merges_and_emits() {
        let (agg, info) = stats();
        assert_eq!(
            info.outputs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["trips", "avg_fare", "sum_fare", "min_fare", "max_fare"]
        );
        let empty = agg.encode(&GroupState::default());
        let events = EventBatch {
            len: 4,
            columns: vec![Column {
                values: ColumnValues::Float64(vec![10.0, 99.0, 20.0, 4.0]),
                valid: vec![true, false, true, true],
            }],
        };
        let states = fold_encoded(&agg, &[empty.clone(), empty], &events, &[0, 0, 0, 1]).unwrap();
        let merged = merge_encoded(&agg, &states[0], &states[1]).unwrap();
        let out = emit_encoded(&agg, &info.outputs, &[states[0].clone(), merged]).unwrap();
        assert_eq!(out.columns[0].values, ColumnValues::Int64(vec![3, 4]));
        assert_eq!(out.columns[1].values, ColumnValues::Float64(vec![15.0, 34.0 / 3.0]));
        assert_eq!(out.columns[3].values, ColumnValues::Float64(vec![10.0, 4.0]));
        assert_eq!(out.columns[4].values, ColumnValues::Float64(vec![20.0, 20.0]));
    }

    #[test]
    fn stats_over_no_values_are_null() {
        let (agg, info) = stats();
        let out = emit_encoded(&agg, &info.outputs, &[agg.encode(&GroupState::default())]).unwrap();
        assert_eq!(out.columns[0].values, ColumnValues::Int64(vec![0]));
        assert!(!out.columns[1].is_valid(0));
    }

    #[test]
    fn corrupt_state_is_an_error() {
        let (agg, _) = stats();
        assert!(agg.decode(&[1, 2, 3]).is_err());
    }
}
