//! Finding the rows that make a plugin fail: when a call over a range fails, split the
//! range in halves and retry each, in order, until every failure is pinned to a
//! single row. Rows in ranges that succeed are processed exactly once.

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
}
