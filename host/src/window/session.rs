//! Session windows: per key, events less than `gap` apart share a window that runs from
//! the first event to the last event plus `gap`. A new event can extend an open session
//! or bridge two; the merged session replaces them, so the host retracts their rows.

use super::Window;

/// One session after a batch's events of one key were merged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    /// Its extent.
    pub window: Window,
    /// The open sessions it absorbs (a session that only gains events absorbs itself).
    pub absorbed: Vec<Window>,
    /// The batch rows that fall in it.
    pub rows: Vec<usize>,
}

/// Merges `events` (event time, row) of one key into its `open` sessions. An open session
/// and an event's own span `[t, t + gap)` merge when they overlap; sessions that no event
/// touches are left out. The result is the same whatever order the events come in.
pub fn merge(open: &[Window], events: &[(i64, usize)], gap: i64) -> Vec<Merged> {
    // Spans sorted by start; open sessions before events at the same start.
    let mut spans: Vec<(Window, Option<usize>)> = open.iter().map(|w| (*w, None)).collect();
    spans.extend(events.iter().map(|&(t, row)| (Window { start: t, end: t.saturating_add(gap) }, Some(row))));
    spans.sort_by_key(|(w, row)| (w.start, row.is_some(), w.end));
    let mut out: Vec<Merged> = Vec::new();
    for (span, row) in spans {
        let joins = out.last().is_some_and(|m| span.start < m.window.end);
        if !joins {
            out.push(Merged { window: span, absorbed: Vec::new(), rows: Vec::new() });
        }
        let merged = out.last_mut().expect("pushed above");
        merged.window.end = merged.window.end.max(span.end);
        match row {
            Some(row) => merged.rows.push(row),
            None => merged.absorbed.push(span),
        }
    }
    out.retain(|m| !m.rows.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    #[test]
    fn events_within_the_gap_share_a_session_and_bridge_open_ones() {
        // Two open sessions; 25 extends the first, 36 bridges it with the second.
        let open = [w(0, 30), w(45, 60)];
        let got = merge(&open, &[(36, 1), (25, 0), (100, 2)], 12);
        assert_eq!(
            got,
            vec![
                Merged { window: w(0, 60), absorbed: vec![w(0, 30), w(45, 60)], rows: vec![0, 1] },
                Merged { window: w(100, 112), absorbed: vec![], rows: vec![2] },
            ]
        );
        // An event exactly `gap` after the last one starts a new session.
        assert_eq!(merge(&[w(0, 10)], &[(10, 0)], 10)[0].absorbed, Vec::<Window>::new());
        // Untouched sessions are not reported.
        assert!(merge(&open, &[], 10).is_empty());
    }

    #[test]
    fn the_order_of_events_does_not_matter() {
        let events: Vec<(i64, usize)> =
            [5, 50, 12, 31, 70, 44, 90, 21].iter().enumerate().map(|(i, &t)| (t, i)).collect();
        let mut reversed = events.clone();
        reversed.reverse();
        let windows = |m: Vec<Merged>| m.into_iter().map(|m| m.window).collect::<Vec<_>>();
        assert_eq!(windows(merge(&[], &events, 10)), windows(merge(&[], &reversed, 10)));
        assert_eq!(windows(merge(&[], &events, 10)), vec![w(5, 31), w(31, 41), w(44, 60), w(70, 80), w(90, 100)]);
    }
}
