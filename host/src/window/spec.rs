//! Window shapes. Windows are half-open, `[start, end)`, in milliseconds since the
//! epoch, and aligned to the epoch: a 1-minute tumbling window starts on the UTC minute.

use anyhow::{bail, Result};

/// One window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// Inclusive start, ms since the epoch.
    pub start: i64,
    /// Exclusive end, ms since the epoch.
    pub end: i64,
}

impl Window {
    /// Whether `t` falls inside.
    pub fn contains(&self, t: i64) -> bool {
        self.start <= t && t < self.end
    }
}

/// How events are grouped in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows of `size_ms`.
    Tumbling {
        /// The window length.
        size_ms: i64,
    },
    /// Windows of `size_ms` starting every `slide_ms`; an event belongs to `size / slide` of them.
    Hopping {
        /// The window length.
        size_ms: i64,
        /// The distance between window starts.
        slide_ms: i64,
    },
    /// Per key, events closer than `gap_ms` to each other share a window.
    Session {
        /// The inactivity gap that closes a session.
        gap_ms: i64,
    },
}

impl WindowSpec {
    /// Checks the sizes; the error names the offending setting.
    pub fn validate(&self) -> Result<()> {
        match *self {
            WindowSpec::Tumbling { size_ms } if size_ms <= 0 => bail!("window.size must be positive, got {size_ms} ms"),
            WindowSpec::Hopping { size_ms, .. } if size_ms <= 0 => {
                bail!("window.size must be positive, got {size_ms} ms")
            }
            WindowSpec::Hopping { slide_ms, .. } if slide_ms <= 0 => {
                bail!("window.slide must be positive, got {slide_ms} ms")
            }
            WindowSpec::Hopping { size_ms, slide_ms } if slide_ms > size_ms => {
                bail!("window.slide ({slide_ms} ms) must not exceed window.size ({size_ms} ms): events between windows would be lost")
            }
            WindowSpec::Session { gap_ms } if gap_ms <= 0 => bail!("window.gap must be positive, got {gap_ms} ms"),
            _ => Ok(()),
        }
    }

    /// The fixed windows containing `t`, earliest first. Session windows depend on the
    /// other events of the key, so they yield the one-event session `[t, t + gap)`.
    pub fn windows_of(&self, t: i64, out: &mut Vec<Window>) {
        out.clear();
        match *self {
            WindowSpec::Tumbling { size_ms } => {
                let start = t.div_euclid(size_ms) * size_ms;
                out.push(Window { start, end: start + size_ms });
            }
            WindowSpec::Hopping { size_ms, slide_ms } => {
                // The latest window start at or before t, then step back while t is still inside.
                let mut start = t.div_euclid(slide_ms) * slide_ms;
                while start > t - size_ms {
                    out.push(Window { start, end: start + size_ms });
                    start -= slide_ms;
                }
                out.reverse();
            }
            WindowSpec::Session { gap_ms } => out.push(Window { start: t, end: t + gap_ms }),
        }
    }

    /// The watermark at which `window` is final: no event that is not late can change it
    /// any more. A fixed window is final at its end. A session is final a `gap` later: an
    /// event that is not late has `t + gap` past the watermark, and it extends a session
    /// only if `t` falls before the session's end.
    pub fn final_at(&self, window: &Window) -> i64 {
        match *self {
            WindowSpec::Session { gap_ms } => window.end.saturating_add(gap_ms),
            _ => window.end,
        }
    }

    /// Whether an event at `t` is late for `window` (one of its windows, or for sessions
    /// its own span `[t, t + gap)`) under its partition's watermark `mark`.
    pub fn is_late(&self, window: &Window, mark: Option<i64>) -> bool {
        mark.is_some_and(|m| window.end <= m)
    }

    /// The end of the latest window `t` can belong to; once the watermark passes it,
    /// an event at `t` is late everywhere.
    pub fn last_end(&self, t: i64) -> i64 {
        match *self {
            WindowSpec::Tumbling { size_ms } => t.div_euclid(size_ms) * size_ms + size_ms,
            WindowSpec::Hopping { size_ms, slide_ms } => t.div_euclid(slide_ms) * slide_ms + size_ms,
            WindowSpec::Session { gap_ms } => t + gap_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(spec: WindowSpec, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        spec.windows_of(t, &mut out);
        out.into_iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn tumbling_aligns_to_the_epoch_also_before_it() {
        let minute = WindowSpec::Tumbling { size_ms: 60_000 };
        assert_eq!(windows(minute, 1_714_550_396_722), vec![(1_714_550_340_000, 1_714_550_400_000)]);
        assert_eq!(windows(minute, 60_000), vec![(60_000, 120_000)]);
        assert_eq!(windows(minute, -1), vec![(-60_000, 0)]);
    }

    #[test]
    fn hopping_gives_every_covering_window() {
        let spec = WindowSpec::Hopping { size_ms: 60, slide_ms: 20 };
        assert_eq!(windows(spec, 45), vec![(0, 60), (20, 80), (40, 100)]);
        assert_eq!(windows(spec, 40), vec![(0, 60), (20, 80), (40, 100)]);
        assert_eq!(windows(spec, 60), vec![(20, 80), (40, 100), (60, 120)]);
        for t in -200..200 {
            let all = windows(spec, t);
            assert_eq!(all.len(), 3, "{t}");
            assert!(all.iter().all(|&(s, e)| s <= t && t < e), "{t}: {all:?}");
            assert_eq!(spec.last_end(t), all.last().unwrap().1);
        }
    }

    #[test]
    fn bad_sizes_name_the_setting() {
        assert!(WindowSpec::Tumbling { size_ms: 0 }.validate().unwrap_err().to_string().contains("window.size"));
        let err = WindowSpec::Hopping { size_ms: 10, slide_ms: 20 }.validate().unwrap_err().to_string();
        assert!(err.contains("window.slide"), "{err}");
        assert!(WindowSpec::Session { gap_ms: -1 }.validate().is_err());
    }
}
