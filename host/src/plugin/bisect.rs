//! Finding the rows that make a plugin fail: when a call over a range fails, split the
//! range in halves and retry each, in order, until every failure is pinned to a
//! single row. Rows in ranges that succeed are processed exactly once.
//!
//! A timeout is the exception. Halving pays a whole deadline at every level that still
//! holds the looping row (twelve levels for a batch of 4,096), so after a timeout the
//! range is run one row at a time: the batch's deadline, then one more per looping row,
//! while the other rows each cost one short call.

use std::ops::Range;

use super::failure::{PluginFailure, RecordFailure};

/// Runs `call` over `rows`, splitting on failure. Returns the successful calls with the
/// start of their range, in row order, and one failure per row that failed alone.
pub fn bisect<O>(
    rows: Range<usize>,
    call: &mut dyn FnMut(Range<usize>) -> Result<O, PluginFailure>,
) -> (Vec<(usize, O)>, Vec<RecordFailure>) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    split(rows, call, &mut done, &mut failed);
    (done, failed)
}

fn split<O>(
    rows: Range<usize>,
    call: &mut dyn FnMut(Range<usize>) -> Result<O, PluginFailure>,
    done: &mut Vec<(usize, O)>,
    failed: &mut Vec<RecordFailure>,
) {
    if rows.is_empty() {
        return;
    }
    match call(rows.clone()) {
        Ok(out) => done.push((rows.start, out)),
        Err(failure) if rows.len() == 1 => failed.push(RecordFailure { index: rows.start as u32, failure }),
        Err(PluginFailure::Timeout(ms)) => {
            tracing::debug!(start = rows.start, len = rows.len(), ms, "plugin call timed out; running it row by row");
            for row in rows {
                split(row..row + 1, call, done, failed);
            }
        }
        Err(failure) => {
            tracing::debug!(start = rows.start, len = rows.len(), %failure, "plugin call failed; splitting the batch");
            let mid = rows.start + rows.len() / 2;
            split(rows.start..mid, call, done, failed);
            split(mid..rows.end, call, done, failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_failures_to_single_rows_and_keeps_order() {
        let bad = [3usize, 4, 9];
        let mut calls = 0;
        let (done, failed) = bisect(0..10, &mut |r: Range<usize>| {
            calls += 1;
            if bad.iter().any(|b| r.contains(b)) {
                Err(PluginFailure::Trap("boom".into()))
            } else {
                Ok(r.clone())
            }
        });
        assert_eq!(failed.iter().map(|f| f.index).collect::<Vec<_>>(), vec![3, 4, 9]);
        let covered: Vec<usize> = done.iter().flat_map(|(_, r)| r.clone()).collect();
        assert_eq!(covered, vec![0, 1, 2, 5, 6, 7, 8]);
        assert!(calls < 20, "{calls} calls");
    }

    #[test]
    fn a_timeout_is_pinned_row_by_row_and_costs_one_more_deadline_per_looping_row() {
        let mut timeouts = 0;
        let (done, failed) = bisect(0..4096, &mut |r: Range<usize>| {
            if r.contains(&1234) {
                timeouts += 1;
                Err(PluginFailure::Timeout(1000))
            } else {
                Ok(r.clone())
            }
        });
        assert_eq!(timeouts, 2, "the batch and the looping row");
        assert_eq!(failed.iter().map(|f| f.index).collect::<Vec<_>>(), vec![1234]);
        assert_eq!(done.iter().map(|(_, r)| r.len()).sum::<usize>(), 4095);
    }
}
