//! What a parser's or transform's answer means for each input row. The contract says a
//! row comes back as events or as an error; plugins get it wrong both ways. A row that
//! came back as both counts once, as the error, so it is never in a window and in the
//! dead letters at once. A parser's row that came back as neither is a failure of the
//! plugin, so it reaches the dead-letter store instead of vanishing (decision 7). A
//! transform may drop a row: that is how it filters. A non-finite float (NaN, ±inf) is
//! an error of its row: one NaN fare would make its whole window's sum and average NaN,
//! so one record would cost every other record of the window; a missing value is null.

use weir_sdk::{ColumnDef, ColumnValues, EventBatch, RecordError};

use super::failure::{PluginFailure, RecordFailure};

/// A stage's output over `input_len` rows, once every row's answer is settled.
pub struct Answers {
    pub events: EventBatch,
    pub sources: Vec<u32>,
    pub errors: Vec<RecordError>,
}

/// Why a parser's row is a dead letter when the parser said nothing about it.
pub const SILENT: &str = "the parser returned neither an event nor an error for this record";

impl Answers {
    /// Settles the answers: one error per row (reasons joined), no events for an errored
    /// row, and, if `every_row_answers`, a failure for each row with neither events nor an
    /// error nor a failure already in `failures` (kept in row order).
    pub fn settle(
        mut self,
        outputs: &[ColumnDef],
        input_len: usize,
        every_row_answers: bool,
        failures: &mut Vec<RecordFailure>,
    ) -> Self {
        self.refuse_non_finite(outputs);
        let mut errored = vec![false; input_len];
        if !self.errors.is_empty() {
            self.errors.sort_by_key(|e| e.index);
            let mut merged: Vec<RecordError> = Vec::with_capacity(self.errors.len());
            for e in self.errors {
                errored[e.index as usize] = true;
                match merged.last_mut() {
                    Some(last) if last.index == e.index => {
                        last.reason.push_str("; ");
                        last.reason.push_str(&e.reason);
                    }
                    _ => merged.push(e),
                }
            }
            self.errors = merged;
            let doubled: Vec<u32> = self.sources.iter().copied().filter(|&s| errored[s as usize]).collect();
            if !doubled.is_empty() {
                self.drop_events_of(&errored, &doubled);
            }
        }
        if every_row_answers {
            let mut answered = errored;
            for &s in &self.sources {
                answered[s as usize] = true;
            }
            for f in failures.iter() {
                answered[f.index as usize] = true;
            }
            let silent = answered.iter().enumerate().filter(|(_, a)| !**a).map(|(i, _)| i as u32);
            let before = failures.len();
            failures.extend(silent.map(|index| RecordFailure { index, failure: PluginFailure::Guest(SILENT.into()) }));
            if failures.len() > before {
                failures.sort_by_key(|f| f.index);
            }
        }
        self
    }

    /// Turns each row holding a non-finite float into an error of its record.
    fn refuse_non_finite(&mut self, outputs: &[ColumnDef]) {
        for (column, def) in self.events.columns.iter().zip(outputs) {
            let ColumnValues::Float64(values) = &column.values else { continue };
            for (row, v) in values.iter().enumerate() {
                if !v.is_finite() && column.is_valid(row) {
                    self.errors.push(RecordError {
                        index: self.sources[row],
                        reason: format!(
                            "the plugin returned {v} in column {:?}: floats must be finite (null marks a missing value)",
                            def.name
                        ),
                    });
                }
            }
        }
    }

    /// Removes the events of errored rows and says so in each row's error.
    fn drop_events_of(&mut self, errored: &[bool], doubled: &[u32]) {
        let kept: Vec<u32> =
            (0..self.sources.len() as u32).filter(|&i| !errored[self.sources[i as usize] as usize]).collect();
        self.events = self.events.take(&kept);
        self.sources = kept.iter().map(|&i| self.sources[i as usize]).collect();
        for e in &mut self.errors {
            let n = doubled.iter().filter(|&&s| s == e.index).count();
            if n > 0 {
                e.reason.push_str(&format!(
                    " (the plugin also returned {n} event{} for this record; only the error counts)",
                    if n == 1 { "" } else { "s" }
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{ColumnDef, ColumnType, ColumnValues};

    fn schema() -> [ColumnDef; 1] {
        [ColumnDef::new("n", ColumnType::Int64)]
    }

    fn answers(sources: Vec<u32>, errors: &[(u32, &str)]) -> Answers {
        let mut events = EventBatch::empty(&schema());
        events.columns[0].values = ColumnValues::Int64(sources.iter().map(|&s| s as i64 * 10).collect());
        events.len = sources.len() as u32;
        let errors = errors.iter().map(|(index, r)| RecordError { index: *index, reason: r.to_string() }).collect();
        Answers { events, sources, errors }
    }

    #[test]
    fn a_row_with_events_and_an_error_counts_once_as_the_error() {
        let mut failures = Vec::new();
        let got = answers(vec![0, 1, 1, 2], &[(1, "bad"), (1, "worse")]).settle(&schema(), 3, true, &mut failures);
        assert_eq!(got.sources, vec![0, 2]);
        assert_eq!(got.events.columns[0].values, ColumnValues::Int64(vec![0, 20]));
        assert_eq!(got.errors.len(), 1);
        assert!(got.errors[0].reason.starts_with("bad; worse (the plugin also returned 2 events"), "{:?}", got.errors);
        assert!(failures.is_empty());
    }

    #[test]
    fn a_parser_row_with_neither_is_a_failure_but_a_transform_may_filter() {
        let mut failures = vec![RecordFailure { index: 3, failure: PluginFailure::Trap("boom".into()) }];
        answers(vec![0, 0], &[(2, "bad")]).settle(&schema(), 5, true, &mut failures);
        let silent: Vec<_> = failures.iter().map(|f| (f.index, f.failure.to_string())).collect();
        assert_eq!(silent.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 3, 4]);
        assert!(silent[0].1.contains(SILENT), "{silent:?}");

        let mut failures = Vec::new();
        answers(vec![0], &[]).settle(&schema(), 5, false, &mut failures);
        assert!(failures.is_empty());
    }

    #[test]
    fn a_non_finite_float_is_an_error_of_its_record() {
        let defs = [ColumnDef::new("fare", ColumnType::Float64)];
        let mut events = EventBatch::empty(&defs);
        events.columns[0].values = ColumnValues::Float64(vec![1.0, f64::NAN, 2.0, f64::NEG_INFINITY]);
        events.len = 4;
        let got = Answers { events, sources: vec![0, 1, 2, 3], errors: Vec::new() }.settle(&defs, 4, true, &mut vec![]);
        assert_eq!(got.sources, vec![0, 2]);
        let reasons: Vec<_> = got.errors.iter().map(|e| (e.index, e.reason.as_str())).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].1.contains("NaN in column \"fare\""), "{reasons:?}");
        assert!(reasons[1].1.contains("-inf"), "{reasons:?}");
    }
}
