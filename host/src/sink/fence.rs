//! Fencing: a checkpoint lands only on top of what its writer last saw of its partitions.
//!
//! The sink remembers, per partition, the offset it restored or last committed. A
//! checkpoint first locks its partitions' rows of `weir_checkpoints` and compares: if a
//! row moved without this writer, someone else wrote it, and writing now would put older
//! offsets and states over newer ones. Two ways that happens: a host cut off from its
//! group (its session expired, its partitions went to another host) that reaches the
//! sink again, and a sink that lost transactions it had acknowledged (PostgreSQL with
//! `synchronous_commit = off` after a crash, an asynchronous replica promoted). Either
//! way the checkpoint is refused whole and the run stops, naming the partition; started
//! again, the host resumes from what the sink holds, which is consistent.

use std::collections::HashMap;

use super::Checkpoint;

/// What this writer last saw of each partition: `None` for no row yet.
#[derive(Debug, Default)]
pub struct Fence {
    seen: HashMap<i32, Option<i64>>,
}

/// A checkpoint refused because its partition moved without this writer.
#[derive(Debug, thiserror::Error)]
#[error(
    "partition {partition}: the sink holds offset {} but this host last wrote or read {}. Another process wrote \
     this partition since (a host whose consumer-group session expired while it was cut off), or the sink lost \
     transactions it had acknowledged (PostgreSQL with synchronous_commit = off after a crash, or a promoted \
     asynchronous replica). Nothing of this checkpoint was written; started again, the host resumes from what \
     the sink holds",
    show(*found),
    show(*seen)
)]
pub struct Fenced {
    pub partition: i32,
    pub found: Option<i64>,
    pub seen: Option<i64>,
}

fn show(offset: Option<i64>) -> String {
    offset.map_or_else(|| "none".into(), |o| o.to_string())
}

impl Fence {
    /// Remembers what a restore read: `stored` for the `partitions` asked for (none for
    /// those without a row).
    pub fn restored(&mut self, partitions: &[i32], stored: impl IntoIterator<Item = (i32, i64)>) {
        for &p in partitions {
            self.seen.insert(p, None);
        }
        self.seen.extend(stored.into_iter().map(|(p, o)| (p, Some(o))));
    }

    /// The checkpoint's partitions this writer has seen, to lock and compare.
    pub fn watched(&self, checkpoint: &Checkpoint) -> Vec<i32> {
        checkpoint.offsets.iter().map(|&(p, _)| p).filter(|p| self.seen.contains_key(p)).collect()
    }

    /// Compares what the sink holds of the watched partitions (`found`, rows present) with
    /// what this writer saw. A row already at the checkpoint's own offset is this
    /// checkpoint's earlier attempt, whose acknowledgement was lost with its connection.
    pub fn check(&self, checkpoint: &Checkpoint, found: &[(i32, i64)]) -> Result<(), Fenced> {
        for &(partition, next) in &checkpoint.offsets {
            let Some(&seen) = self.seen.get(&partition) else { continue };
            let held = found.iter().find(|(p, _)| *p == partition).map(|&(_, o)| o);
            if held != seen && held != Some(next) {
                return Err(Fenced { partition, found: held, seen });
            }
        }
        Ok(())
    }

    /// Remembers a committed checkpoint's offsets.
    pub fn committed(&mut self, checkpoint: &Checkpoint) {
        self.seen.extend(checkpoint.offsets.iter().map(|&(p, o)| (p, Some(o))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(offsets: &[(i32, i64)]) -> Checkpoint {
        Checkpoint { offsets: offsets.to_vec(), ..Default::default() }
    }

    #[test]
    fn a_partition_that_moved_without_this_writer_is_refused() {
        let mut fence = Fence::default();
        fence.restored(&[0, 1], [(0, 100)]);
        let first = checkpoint(&[(0, 150), (1, 20), (7, 5)]);
        assert_eq!(fence.watched(&first), vec![0, 1], "a partition never restored is not watched");
        fence.check(&first, &[(0, 100)]).unwrap();
        // The same checkpoint again after a lost acknowledgement.
        fence.check(&first, &[(0, 150), (1, 20)]).unwrap();
        fence.committed(&first);

        let next = checkpoint(&[(0, 180)]);
        fence.check(&next, &[(0, 150)]).unwrap();
        let moved = fence.check(&next, &[(0, 170)]).unwrap_err();
        assert_eq!((moved.partition, moved.found, moved.seen), (0, Some(170), Some(150)));
        assert!(moved.to_string().contains("holds offset 170 but this host last wrote or read 150"), "{moved}");
        // The sink went back: it lost what it acknowledged.
        assert!(fence.check(&next, &[(0, 100)]).is_err());
        assert!(fence.check(&checkpoint(&[(1, 30)]), &[]).is_err(), "a row vanished");
    }
}
