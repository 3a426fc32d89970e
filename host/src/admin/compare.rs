//! `weir plugin diff`: the windows where a shadow's rows differ from the live ones. Both
//! arrive in the same commits (the sink thread hands them over once a commit lands), so
//! the comparison holds exactly what the two tables hold for the windows written since
//! the shadow started.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::sink::{cell_json, key_json, Checkpoint, ShadowRows, TableSchema, WindowRow};

/// Windows kept for comparison; beyond this, new windows are counted but not compared.
const MAX_WINDOWS: usize = 100_000;

#[derive(Default)]
struct Pair {
    key: Vec<Value>,
    live: Option<Vec<Value>>,
    shadow: Option<Vec<Value>>,
}

/// The live and shadow rows of every window written since a shadow started.
pub struct Comparison {
    table: TableSchema,
    stage: String,
    live: String,
    candidate: String,
    started_ms: i64,
    commits: u64,
    windows: BTreeMap<(i64, i64, String), Pair>,
    dropped: u64,
}

impl Comparison {
    fn new(shadow: &ShadowRows) -> Self {
        Comparison {
            table: shadow.table.clone(),
            stage: shadow.stage.clone(),
            live: shadow.live.clone(),
            candidate: shadow.candidate.clone(),
            started_ms: shadow.started_ms,
            commits: 0,
            windows: BTreeMap::new(),
            dropped: 0,
        }
    }

    fn take(&mut self, rows: &[WindowRow], shadow: bool) {
        for row in rows {
            let id = (row.window.start, row.window.end, key_json(&row.key));
            if !self.windows.contains_key(&id) && self.windows.len() >= MAX_WINDOWS {
                self.dropped += 1;
                continue;
            }
            let pair = self.windows.entry(id).or_default();
            pair.key = row.key.iter().map(cell_json).collect();
            let values = Some(row.values.iter().map(cell_json).collect());
            if shadow {
                pair.shadow = values;
            } else {
                pair.live = values;
            }
        }
    }

    /// Takes in a commit that has landed; the comparison of `current` ends when a
    /// commit carries no shadow, and starts afresh with a new one.
    pub fn committed(current: &mut Option<Comparison>, checkpoint: &Checkpoint) {
        let Some(shadow) = &checkpoint.shadow else {
            *current = None;
            return;
        };
        if shadow.fresh || current.is_none() {
            *current = Some(Comparison::new(shadow));
        }
        let comparison = current.as_mut().expect("set above");
        comparison.commits += 1;
        comparison.take(&checkpoint.rows, false);
        comparison.take(&shadow.rows, true);
    }

    fn named(columns: &[weir_sdk::ColumnDef], values: &[Value]) -> Value {
        Value::Object(columns.iter().zip(values).map(|(c, v)| (c.name.clone(), v.clone())).collect::<Map<_, _>>())
    }

    /// The report: what is compared, and up to `limit` windows where the two differ.
    pub fn report(&self, limit: usize) -> Value {
        let differing: Vec<(&(i64, i64, String), &Pair)> =
            self.windows.iter().filter(|(_, pair)| pair.live != pair.shadow).collect();
        let windows: Vec<Value> = differing
            .iter()
            .take(limit)
            .map(|((start, end, _), pair)| {
                let side = |values: &Option<Vec<Value>>| {
                    values.as_ref().map_or(Value::Null, |v| Self::named(&self.table.values, v))
                };
                json!({
                    "window_start": weir_sdk::time::format_iso8601(*start),
                    "window_end": weir_sdk::time::format_iso8601(*end),
                    "key": Self::named(&self.table.keys, &pair.key),
                    "live": side(&pair.live),
                    "shadow": side(&pair.shadow),
                })
            })
            .collect();
        json!({
            "stage": self.stage,
            "live": self.live,
            "candidate": self.candidate,
            "table": self.table.name,
            "since": weir_sdk::time::format_iso8601(self.started_ms),
            "commits": self.commits,
            "windows_compared": self.windows.len(),
            "windows_not_compared": self.dropped,
            "differing": differing.len(),
            "windows": windows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::fixtures::{city_trips, city_trips_table};

    fn row(city: &str, trips: i64) -> WindowRow {
        city_trips(0, city, trips)
    }

    #[test]
    fn windows_differ_by_value_or_by_being_on_one_side_only() {
        let table = city_trips_table("t__shadow");
        let shadow = |rows, fresh| ShadowRows {
            table: table.clone(),
            stage: "validators[0]".into(),
            live: "a@1".into(),
            candidate: "b@2".into(),
            fresh,
            started_ms: 0,
            rows,
        };
        let mut current = None;
        let checkpoint = Checkpoint {
            rows: vec![row("Oslo", 3), row("Lima", 2), row("Pune", 1)],
            shadow: Some(shadow(vec![row("Oslo", 3), row("Lima", 1)], true)),
            ..Checkpoint::default()
        };
        Comparison::committed(&mut current, &checkpoint);
        let report = current.as_ref().unwrap().report(10);
        assert_eq!(report["windows_compared"], 3);
        assert_eq!(report["differing"], 2, "{report}");
        assert_eq!(report["windows"][0]["key"]["city"], "Lima");
        assert_eq!(report["windows"][0]["shadow"]["trips"], 1);
        assert_eq!(report["windows"][1]["shadow"], Value::Null, "Pune is live only");

        // The shadow catches up on Lima; a commit without a shadow ends the comparison.
        let checkpoint = Checkpoint { shadow: Some(shadow(vec![row("Lima", 2)], false)), ..Checkpoint::default() };
        Comparison::committed(&mut current, &checkpoint);
        assert_eq!(current.as_ref().unwrap().report(10)["differing"], 1);
        Comparison::committed(&mut current, &Checkpoint::default());
        assert!(current.is_none());
    }
}
