//! SIGKILL loops for the fault suite: trips written into growing files at a steady rate
//! while a host is killed at random moments and started again, and the records each
//! file ended with, for the truth.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weir::rides::{TripGenerator, TripOptions};

use crate::lateness::Rng;
use crate::Reaped;

/// Every record written, `(file number, byte offset, payload)`.
pub type Written = Vec<(i32, i64, Vec<u8>)>;

/// Appends `events` rides trips (2% out of order, 1% malformed) round-robin to `files`
/// files `trips-N.jsonl` in `dir`, in slices of 1,000 at `rate` events per second, so
/// that a host killed again and again always finds more to read.
pub fn write_files(dir: &Path, events: u64, files: usize, rate: u64, seed: u64) -> JoinHandle<Written> {
    let paths: Vec<PathBuf> = (0..files).map(|k| dir.join(format!("trips-{k}.jsonl"))).collect();
    std::thread::spawn(move || {
        let mut trips =
            TripGenerator::new(TripOptions { seed, late_share: 0.02, malformed_share: 0.01, ..TripOptions::default() });
        let mut out: Vec<std::fs::File> =
            paths.iter().map(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap()).collect();
        let mut ends = vec![0i64; files];
        let mut written = Vec::with_capacity(events as usize);
        let started = Instant::now();
        let mut sent = 0u64;
        while sent < events {
            let slice = (events - sent).min(1000);
            let mut chunks = vec![Vec::new(); files];
            for i in sent..sent + slice {
                let k = (i % files as u64) as usize;
                let event = trips.next_event();
                written.push((k as i32, ends[k] + chunks[k].len() as i64, event.clone()));
                chunks[k].extend_from_slice(&event);
                chunks[k].push(b'\n');
            }
            for (k, chunk) in chunks.iter().enumerate() {
                out[k].write_all(chunk).unwrap();
                ends[k] += chunk.len() as i64;
            }
            sent += slice;
            // The schedule, not a synchronisation: the files grow at `rate`.
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        written
    })
}

/// The rides generator's first `events` trips (1% malformed, 2% out of order) in
/// `dir/trips.jsonl`: the benchmarks' input.
pub fn write_trips(dir: &Path, events: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut file = std::io::BufWriter::new(std::fs::File::create(dir.join("trips.jsonl")).unwrap());
    let mut generator = TripGenerator::new(TripOptions::default());
    for _ in 0..events {
        file.write_all(&generator.next_event()).unwrap();
        file.write_all(b"\n").unwrap();
    }
}

/// What a kill loop did.
#[derive(Debug, Default)]
pub struct Killed {
    pub kills: u64,
    /// Kills that struck before the host had committed anything of its own.
    pub before_commit: u64,
    /// The longest time from a start to the first commit that moved the offsets on.
    pub recover: Duration,
}

/// Starts a host with `spawn` and SIGKILLs it, `kills` times. One kill in five strikes at
/// a random moment of its first 300 ms (starting up, restoring, joining); the others a
/// random 0-`within` after its first commit that moved `committed` on.
pub fn kill_loop(
    kills: u64,
    seed: u64,
    within: Duration,
    mut spawn: impl FnMut() -> Reaped,
    committed: impl Fn() -> i64,
) -> Killed {
    let mut rng = Rng(seed | 1);
    let mut done = Killed::default();
    let mut last = committed();
    while done.kills < kills {
        let mut host = spawn();
        let started = Instant::now();
        let early = rng.below(5) == 0;
        let pause = Duration::from_millis(rng.below(if early { 300 } else { within.as_millis() as u64 + 1 }));
        let mut strike = early.then(|| started + pause);
        loop {
            if let Ok(Some(status)) = host.try_wait() {
                let mut log = String::new();
                if let Some(stderr) = host.0.stderr.as_mut() {
                    let _ = std::io::Read::read_to_string(stderr, &mut log);
                }
                panic!("the host exited with {status} before kill {}: {log}", done.kills + 1);
            }
            if strike.is_none() {
                let now = committed();
                if now > last {
                    done.recover = done.recover.max(started.elapsed());
                    last = now;
                    strike = Some(Instant::now() + pause);
                }
                assert!(started.elapsed() < Duration::from_secs(90), "no commit within 90 s of a start");
            }
            if strike.is_some_and(|at| Instant::now() >= at) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        host.kill().unwrap();
        host.wait().unwrap();
        done.kills += 1;
        done.before_commit += u64::from(early);
        last = last.max(committed());
    }
    done
}
