//! Independent readers of weir's outputs: Redis through `redis-cli` and Redis's own Lua,
//! a Delta table through Python's `deltalake` (`tests/readers/delta.py`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::services::{repo_root, Redis};

/// Every window hash under `PREFIX:TABLE:`, as `key → {field → value}`.
pub fn redis_hashes(redis: &Redis, prefix: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    // KEYS and HGETALL inside the server, encoded by its cjson: one round trip. Only
    // hashes: the delivery mark (`PREFIX:TABLE:_delivered`) is a string.
    let script = "local out = {} for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
                  if redis.call('TYPE', k).ok == 'hash' then \
                  local h = redis.call('HGETALL', k) local m = {} \
                  for i = 1, #h, 2 do m[h[i]] = h[i + 1] end out[k] = m end end \
                  if next(out) == nil then return '{}' end return cjson.encode(out)";
    let text = redis.cli(&["EVAL", script, "0", &format!("{prefix}:*:*")]);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("redis answered {text:?}: {e}"))
}

/// The rides windows in Redis under `prefix`: `(window start, city) → (trips, sum_fare)`.
pub fn redis_windows(redis: &Redis, prefix: &str) -> BTreeMap<(i64, String), (i64, f64)> {
    redis_hashes(redis, prefix)
        .into_values()
        .map(|h| {
            let get = |f: &str| h.get(f).unwrap_or_else(|| panic!("a window hash without {f}: {h:?}")).clone();
            (
                (get("window_start").parse().unwrap(), get("city")),
                (get("trips").parse().unwrap(), get("sum_fare").parse().unwrap()),
            )
        })
        .collect()
}

/// What `tests/readers/delta.py` says of the Delta table at `path`: `rows` (the latest revision of each
/// window, times in ms), `txn` (the version of app id `weir:PIPELINE`), `operations`,
/// `files` and `version`.
pub fn delta_read(path: &Path, keys: &str, pipeline: &str) -> serde_json::Value {
    delta_read_at(path.to_str().unwrap(), &BTreeMap::new(), keys, pipeline)
}

/// [`delta_read`] of the table at `location` (a directory or an `s3://` URL), reached with
/// the object store's `options`.
pub fn delta_read_at(
    location: &str,
    options: &BTreeMap<String, String>,
    keys: &str,
    pipeline: &str,
) -> serde_json::Value {
    let script = repo_root().join("tests/readers/delta.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args([location, keys, &format!("weir:{pipeline}")]);
    if !options.is_empty() {
        cmd.arg(serde_json::to_string(options).unwrap());
    }
    let out = cmd.output().expect("running python3");
    assert!(
        out.status.success(),
        "reading {location} with Python's deltalake (`cargo xtask test` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The rides windows of [`delta_read`]'s rows: `(window start, city) → (trips, sum_fare)`.
pub fn delta_windows(read: &serde_json::Value) -> BTreeMap<(i64, String), (i64, f64)> {
    read["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let key = (r["window_start"].as_i64().unwrap(), r["city"].as_str().unwrap().to_string());
            (key, (r["trips"].as_i64().unwrap(), r["sum_fare"].as_f64().unwrap()))
        })
        .collect()
}
