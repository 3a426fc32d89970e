//! Anomaly flags on window values (`[quality.anomalies]`): per key and output column, a
//! final window's value is compared with the same key's previous final windows, by its
//! distance from their median in robust standard deviations (1.4826 × the median
//! absolute deviation). The median and MAD ignore the outliers a mean and a standard
//! deviation would chase, so one spike neither hides the next nor makes normal windows
//! look strange afterwards.
//!
//! A flat history (MAD 0) would make any change infinitely strange: the spread is floored
//! at a tenth of the median's size, so a value must differ from a steady history by more
//! than `threshold / 10` of it. A key with a history and no row in a final window is
//! judged with the column's `absent` value (a count's 0), if it has one.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::config::{AnomalyConfig, ColumnAnomaly};
use crate::sink::{key_json, Anomaly, Cell, TableSchema, WindowRow};

/// Detects anomalies in the final rows a host commits.
pub struct Detector {
    config: AnomalyConfig,
    /// Output value columns judged: (index among the values, name, settings).
    columns: Vec<(usize, String, ColumnAnomaly)>,
    /// Each key's previous values per judged column, oldest first.
    history: HashMap<String, Vec<VecDeque<f64>>>,
    /// The latest window judged per key.
    judged: HashMap<String, i64>,
    /// The latest final window seen, to judge absent keys once per window.
    latest: Option<i64>,
}

impl Detector {
    /// A detector over `table`'s numeric value columns, but those configured off.
    pub fn new(config: &AnomalyConfig, table: &TableSchema) -> Option<Self> {
        use weir_sdk::ColumnType;
        let columns: Vec<(usize, String, ColumnAnomaly)> = table
            .values
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.ty, ColumnType::Int64 | ColumnType::Float64))
            .map(|(i, c)| (i, c.name.clone(), config.columns.get(&c.name).copied().unwrap_or_default()))
            .filter(|(_, _, settings)| !settings.off)
            .collect();
        (config.enabled && !columns.is_empty()).then(|| Detector {
            config: config.clone(),
            columns,
            history: HashMap::new(),
            judged: HashMap::new(),
            latest: None,
        })
    }

    /// Judges the final rows among `rows` (committed just now) whose window is newer than
    /// any judged for their key, then adds them to the history.
    pub fn observe(&mut self, rows: &[WindowRow]) -> Vec<Anomaly> {
        let mut by_window: BTreeMap<(i64, i64), Vec<&WindowRow>> = BTreeMap::new();
        for row in rows.iter().filter(|r| r.is_final) {
            by_window.entry((row.window.start, row.window.end)).or_default().push(row);
        }
        // Each judged column's place among the values and its `absent` value, apart from
        // `self`, which `judge` borrows mutably.
        let columns: Vec<(usize, Option<f64>)> = self.columns.iter().map(|(i, _, s)| (*i, s.absent)).collect();
        let mut found = Vec::new();
        for ((start, end), rows) in by_window {
            let mut present = HashSet::with_capacity(rows.len());
            for row in rows {
                let key = key_json(&row.key);
                if self.judged.get(&key).is_some_and(|&at| at >= start) {
                    continue;
                }
                self.judged.insert(key.clone(), start);
                for (slot, &(index, _)) in columns.iter().enumerate() {
                    let value = match row.values.get(index) {
                        Some(Cell::Int(v)) => *v as f64,
                        Some(Cell::Float(v)) if v.is_finite() => *v,
                        _ => continue,
                    };
                    found.extend(self.judge(&key, slot, value, start, end));
                }
                present.insert(key);
            }
            if self.latest.is_some_and(|l| l >= start) {
                continue;
            }
            self.latest = Some(start);
            // Keys with a history that this window lacks, judged with their `absent` value.
            let absent: Vec<String> = self
                .judged
                .iter()
                .filter(|(k, &at)| at < start && !present.contains(*k))
                .map(|(k, _)| k.clone())
                .collect();
            for key in absent {
                for (slot, &(_, absent)) in columns.iter().enumerate() {
                    if let Some(value) = absent {
                        found.extend(self.judge(&key, slot, value, start, end));
                    }
                }
            }
        }
        found
    }

    /// Judges `value` of `key`'s column `slot`, then keeps it in the history.
    fn judge(&mut self, key: &str, slot: usize, value: f64, start: i64, end: i64) -> Option<Anomaly> {
        let columns = self.columns.len();
        let history = &mut self.history.entry(key.to_string()).or_insert_with(|| vec![VecDeque::new(); columns])[slot];
        let flagged = (history.len() >= self.config.min_history).then(|| {
            let (baseline, spread) = baseline(history.make_contiguous());
            let score = (value - baseline) / spread;
            (score.abs() > self.config.threshold).then(|| Anomaly {
                start,
                end,
                key: key.to_string(),
                column: self.columns[slot].1.clone(),
                value,
                baseline,
                spread,
                score,
                history: history.len() as i64,
            })
        });
        history.push_back(value);
        if history.len() > self.config.history {
            history.pop_front();
        }
        flagged.flatten()
    }
}

/// The median of `values` and their robust spread, floored (see the module's note).
fn baseline(values: &[f64]) -> (f64, f64) {
    let middle = median(values);
    let deviations: Vec<f64> = values.iter().map(|v| (v - middle).abs()).collect();
    let mad: f64 = median(&deviations);
    (middle, (1.4826 * mad).max(0.1 * middle.abs()).max(1e-9))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Window;
    use weir_sdk::{ColumnDef, ColumnType};

    fn table() -> TableSchema {
        TableSchema {
            name: "t".into(),
            keys: vec![ColumnDef::new("city", ColumnType::Text)],
            values: vec![ColumnDef::new("trips", ColumnType::Int64), ColumnDef::new("avg_fare", ColumnType::Float64)],
        }
    }

    fn row(minute: i64, city: &str, trips: i64, fare: f64) -> WindowRow {
        WindowRow {
            window: Window { start: minute * 60_000, end: (minute + 1) * 60_000 },
            key: vec![Cell::Text(city.into())],
            values: vec![Cell::Int(trips), Cell::Float(fare)],
            is_final: true,
            revision: 1,
        }
    }

    /// Per-city trip counts and average fares per minute of the rides generator.
    fn rides_minutes(minutes: i64) -> Vec<Vec<(String, i64, f64)>> {
        let mut generator = crate::rides::TripGenerator::new(crate::rides::TripOptions {
            late_share: 0.0,
            malformed_share: 0.0,
            events_per_second: 100,
            ..Default::default()
        });
        let mut out = Vec::new();
        for _ in 0..minutes {
            let mut cities: BTreeMap<String, (i64, f64)> = BTreeMap::new();
            for _ in 0..6000 {
                let event: serde_json::Value = serde_json::from_slice(&generator.next_event()).unwrap();
                let c = cities.entry(event["city"].as_str().unwrap().to_string()).or_default();
                c.0 += 1;
                c.1 += event["fare"].as_f64().unwrap();
            }
            out.push(cities.into_iter().map(|(city, (n, sum))| (city, n, sum / n as f64)).collect());
        }
        out
    }

    #[test]
    fn a_normal_day_is_not_flagged_and_a_spike_and_a_drop_to_nothing_are() {
        let config: AnomalyConfig = toml::from_str("columns.trips = { absent = 0.0 }").unwrap();
        let mut detector = Detector::new(&config, &table()).unwrap();
        let minutes = rides_minutes(300);
        let mut flagged = 0;
        let mut judged = 0;
        for (m, cities) in minutes.iter().enumerate() {
            let rows: Vec<WindowRow> = cities.iter().map(|(c, n, f)| row(m as i64, c, *n, *f)).collect();
            judged += rows.len() * 2;
            flagged += detector.observe(&rows).len();
        }
        assert_eq!(flagged, 0, "no false positives in {judged} values of normal rides data");
        // Oslo's fares triple, and Lima has no trips at all.
        let next = 300;
        let mut rows: Vec<WindowRow> = minutes[0]
            .iter()
            .filter(|(c, _, _)| c != "Lima")
            .map(|(c, n, f)| row(next, c, *n, if c == "Oslo" { f * 3.0 } else { *f }))
            .collect();
        rows.push(row(next - 1, "Oslo", 1, 1.0)); // an older window again: not judged twice
        let found = detector.observe(&rows);
        let names: Vec<(String, String)> = found.iter().map(|a| (a.key.clone(), a.column.clone())).collect();
        assert_eq!(names, [("[\"Oslo\"]".to_string(), "avg_fare".to_string()), ("[\"Lima\"]".into(), "trips".into())]);
        assert!(found[0].score > 6.0 && found[1].value == 0.0 && found[1].baseline > 400.0, "{found:?}");
    }
}
