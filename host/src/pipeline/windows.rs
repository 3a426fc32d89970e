//! The open windows of a pipeline: one aggregator state per window and key, with the
//! bookkeeping a checkpoint needs (what changed, what closed, revisions).

use rustc_hash::FxHashMap;

use crate::sink::{Cell, WindowState};
use crate::window::Window;

/// One window and key.
#[derive(Clone)]
pub struct Group {
    /// The window.
    pub window: Window,
    /// Index into `OpenWindows::keys`.
    pub key: u32,
    /// The source partition of its events; it leaves memory when that partition is revoked.
    pub partition: i32,
    /// The aggregator state.
    pub state: Vec<u8>,
    /// 1 once written; raised when a final window is corrected.
    pub revision: i64,
    /// Whether it was written as final.
    pub is_final: bool,
    /// Changed since the last checkpoint.
    pub dirty: bool,
    /// Whether a checkpoint has written it, so that it has rows to retract when a
    /// session that absorbs it replaces it.
    pub stored: bool,
}

/// Groups by window and key. Keys are interned: per row the pipeline looks up a key
/// by its encoded bytes without allocating.
#[derive(Clone, Default)]
pub struct OpenWindows {
    key_ids: FxHashMap<Vec<u8>, u32>,
    /// The key values, by key id.
    pub keys: Vec<Vec<Cell>>,
    index: FxHashMap<(i64, i64, u32), usize>,
    by_key: FxHashMap<u32, Vec<Window>>,
    /// The groups; closed ones are removed at checkpoints.
    pub groups: Vec<Group>,
}

impl OpenWindows {
    /// The id of the key encoded as `encoded`, if it was seen before.
    pub fn known(&self, encoded: &[u8]) -> Option<u32> {
        self.key_ids.get(encoded).copied()
    }

    /// The id of the key encoded as `encoded`, interning `cells()` if new.
    pub fn key_id(&mut self, encoded: &[u8], cells: impl FnOnce() -> Vec<Cell>) -> u32 {
        if let Some(&id) = self.key_ids.get(encoded) {
            return id;
        }
        let id = self.keys.len() as u32;
        self.keys.push(cells());
        self.key_ids.insert(encoded.to_vec(), id);
        id
    }

    /// The group of `window` and `key`, created with `empty` state if new.
    pub fn group(&mut self, window: Window, key: u32, partition: i32, empty: &[u8]) -> usize {
        *self.index.entry((window.start, window.end, key)).or_insert_with(|| {
            self.by_key.entry(key).or_default().push(window);
            self.groups.push(Group {
                window,
                key,
                partition,
                state: empty.to_vec(),
                revision: 1,
                is_final: false,
                dirty: false,
                stored: false,
            });
            self.groups.len() - 1
        })
    }

    /// Whether memory holds `window` of `key`.
    pub fn contains(&self, window: Window, key: u32) -> bool {
        self.index.contains_key(&(window.start, window.end, key))
    }

    /// The windows held for `key`.
    pub fn of_key(&self, key: u32) -> &[Window] {
        self.by_key.get(&key).map_or(&[], Vec::as_slice)
    }

    /// Takes the group of `window` and `key` out.
    pub fn remove(&mut self, window: Window, key: u32) -> Option<Group> {
        let g = self.index.remove(&(window.start, window.end, key))?;
        if let Some(windows) = self.by_key.get_mut(&key) {
            windows.retain(|w| *w != window);
        }
        let group = self.groups.swap_remove(g);
        if let Some(moved) = self.groups.get(g) {
            self.index.insert((moved.window.start, moved.window.end, moved.key), g);
        }
        Some(group)
    }

    /// Brings back a group from a checkpoint.
    pub fn restore(&mut self, saved: WindowState, encoded: &[u8]) {
        let key = self.key_id(encoded, || saved.key.clone());
        let g = self.group(saved.window, key, saved.partition, &saved.state);
        let group = &mut self.groups[g];
        group.state = saved.state;
        group.revision = saved.revision;
        group.is_final = saved.is_final;
        group.stored = true;
    }

    /// Removes the groups matching `closed` and returns them.
    pub fn take_closed(&mut self, closed: impl Fn(&Group) -> bool) -> Vec<Group> {
        let (gone, kept): (Vec<Group>, Vec<Group>) =
            std::mem::take(&mut self.groups).into_iter().partition(|g| closed(g));
        self.groups = kept;
        self.index = self.groups.iter().enumerate().map(|(i, g)| ((g.window.start, g.window.end, g.key), i)).collect();
        self.by_key.clear();
        for g in &self.groups {
            self.by_key.entry(g.key).or_default().push(g.window);
        }
        gone
    }
}
