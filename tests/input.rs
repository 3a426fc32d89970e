//! Input as users have it, and the tools around bad records: a byte-order mark, a closed
//! stdout, `weir validate` on a fresh machine, CSV rows kept as read, and the dead-letter
//! store and late lane from the command line. Expectations come from the input, through
//! `weir_tests::lateness`.

use rusqlite::Connection;
use weir_tests::lateness::{self, file, lines, pipeline, replay_late, run, setup, summary_counts, truth, weir, Shape};

const T0: i64 = 1_714_550_400_000; // 08:00
const MIN: i64 = 60_000;

/// `weir dead-letters list|show|purge` and `weir late list` show what the sink holds,
/// with each record's file and line, without SQL.
#[test]
fn dead_letters_and_late_events_are_listed_shown_and_purged_from_the_command_line() {
    let input = lateness::random(21, 400);
    let want = truth(&input, Shape::Hopping, true);
    let dir = setup(Shape::Hopping, &input);
    run(dir.path(), 64);
    let json = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = weir(dir.path(), args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let line_of = |offset: i64| input.iter().position(|l| l.offset == offset).unwrap();

    let dead = json(&["dead-letters", "list", "p.toml", "--json", "--limit", "100000"]);
    let offsets: std::collections::BTreeSet<i64> = dead.iter().map(|d| d["offset"].as_i64().unwrap()).collect();
    assert_eq!(offsets, want.dead);
    for d in &dead {
        let offset = d["offset"].as_i64().unwrap();
        let n = line_of(offset);
        let place = d["place"].as_str().unwrap();
        assert!(place.ends_with(&format!("trips.jsonl line {} (byte {offset})", n + 1)), "{place}");
        assert_eq!(d["raw"].as_str().unwrap(), input[n].text.trim_end());
    }
    let late = json(&["late", "list", "p.toml", "--json", "--limit", "100000"]);
    let pairs: std::collections::BTreeSet<(i64, i64)> = late
        .iter()
        .map(|l| {
            let start = weir_sdk::time::parse_iso8601(l["window"][0].as_str().unwrap().as_bytes()).unwrap();
            (l["offset"].as_i64().unwrap(), start)
        })
        .collect();
    assert_eq!(pairs, want.late);

    let id = dead[0]["id"].as_i64().unwrap().to_string();
    let out = weir(dir.path(), &["dead-letters", "show", "p.toml", &id]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(dead[0]["reason"].as_str().unwrap()) && text.contains(dead[0]["raw"].as_str().unwrap()));

    let refused = weir(dir.path(), &["dead-letters", "purge", "p.toml"]).output().unwrap();
    assert!(!refused.status.success(), "purging everything needs --all");
    let malformed = dead.iter().filter(|d| d["kind"] == "malformed").count();
    assert!(malformed > 0 && malformed < dead.len());
    let out = weir(dir.path(), &["dead-letters", "purge", "p.toml", "--kind", "malformed"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("purged {malformed} record(s) of the dead letters in pipeline \"late-trips\"")
    );
    let left = json(&["dead-letters", "list", "p.toml", "--json", "--limit", "100000"]);
    assert_eq!(left.len(), dead.len() - malformed);
    assert!(left.iter().all(|d| d["kind"] != "malformed"));

    // The file is gone: the sink still knows which file the partition's hash stood for.
    std::fs::rename(dir.path().join("input/trips.jsonl"), dir.path().join("moved.jsonl")).unwrap();
    let gone = json(&["dead-letters", "list", "p.toml", "--json", "--limit", "1"]);
    let place = gone[0]["place"].as_str().unwrap();
    assert!(place.contains("trips.jsonl byte "), "{place}");
}

/// Input as users have it, and the command line around it: a byte-order mark is skipped,
/// a bounded input ends the run at its end without `--until-idle`, `weir validate`
/// creates nothing, and a closed stdout ends `weir run` without a panic.
#[test]
fn a_bom_file_runs_to_its_end_validate_writes_nothing_and_a_closed_stdout_is_quiet() {
    let input = lines(&[Some(("Oslo", 3, T0)), Some(("Oslo", 4, T0 + 1_000))]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("input")).unwrap();
    std::fs::write(dir.path().join("input/trips.jsonl"), format!("\u{feff}{}", file(&input))).unwrap();
    std::fs::write(dir.path().join("p.toml"), pipeline(Shape::Tumbling, "sqlite://data/out.db", "1s")).unwrap();

    let out = weir(dir.path(), &["validate", "p.toml"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("data").exists(), "validate created the database's directory");

    // No --until-idle: the files are read to their end, checkpointed, and the run exits.
    let mut child = weir(dir.path(), &["run", "p.toml", "--quiet", "--no-admin"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // as `| head -0` would: nobody reads the summary
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let conn = Connection::open(dir.path().join("data/out.db")).unwrap();
    let (trips, sum): (i64, f64) =
        conn.query_row("SELECT trips, sum_fare FROM trips", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((trips, sum), (2, 7.0), "the first line, behind the byte-order mark, counts");
    let dead: i64 = conn.query_row("SELECT count(*) FROM weir_dead_letters", [], |r| r.get(0)).unwrap();
    assert_eq!(dead, 0);
}

/// Defect 7: a CSV dead letter stored a JSON re-encoding without the undeclared columns.
/// Dead letters and late events of a CSV file keep the row as read; a replay converts it
/// through the file's header with the columns the (fixed) parser declares now.
#[test]
fn csv_dead_letters_and_late_events_keep_the_row_as_read_and_replay_through_the_header() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("input")).unwrap();
    let at = |s: i64| weir_sdk::time::format_iso8601(T0 + s * 1_000);
    let mut rows = vec!["city,fare,event_time,note".to_string()];
    let mut want: std::collections::BTreeMap<(i64, String), i64> = Default::default();
    for i in 0..60i64 {
        let (city, fare) = (["Oslo", "Lima"][i as usize % 2], if i % 10 == 3 { 250 } else { 10 + i });
        rows.push(format!("{city},{fare},{},\"note {i}, with a comma\"", at(i * 20)));
        *want.entry(((T0 + i * 20_000).div_euclid(MIN) * MIN, city.to_string())).or_default() += 1;
    }
    rows.push(format!("Pune,5,{},late", at(-600))); // ten minutes behind: late
    *want.entry((T0 - 10 * MIN, "Pune".to_string())).or_default() += 1;
    std::fs::write(dir.path().join("input/trips.csv"), rows.join("\r\n") + "\r\n").unwrap();
    let text = pipeline(Shape::Tumbling, "sqlite://out.db", "1s")
        .replace("path = \"input\"", "path = \"input\"\nformat = \"csv\"")
        .replace("[aggregator]", "[[validators]]\nplugin = \"rules_validator\"\nconfig.rules = [{ name = \"fare-max\", field = \"fare\", max = 100.0 }]\n\n[aggregator]");
    std::fs::write(dir.path().join("p.toml"), &text).unwrap();
    std::fs::write(dir.path().join("fixed.toml"), text.replace("max = 100.0", "max = 1000.0")).unwrap();
    run(dir.path(), 7);

    let conn = Connection::open(dir.path().join("out.db")).unwrap();
    let stored = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| Ok(String::from_utf8(r.get::<_, Vec<u8>>(0)?).unwrap()))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let dead = stored("SELECT raw FROM weir_dead_letters ORDER BY source_offset");
    let wanted: Vec<&String> = rows.iter().filter(|r| r.contains(",250,")).collect();
    assert_eq!(dead.iter().collect::<Vec<_>>(), wanted, "dead letters hold the rows as read");
    assert_eq!(stored("SELECT raw FROM weir_late_events"), [rows.last().unwrap().clone()]);

    replay_late(dir.path());
    let out = weir(dir.path(), &["replay", "fixed.toml", "--dead-letters", "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 6 dead letters: 6 folded"), "{out:?}");
    let mut stmt = conn.prepare("SELECT window_start, city, trips FROM trips").unwrap();
    let ms = |text: String| weir_sdk::time::parse_iso8601(text.as_bytes()).unwrap();
    let got: std::collections::BTreeMap<(i64, String), i64> =
        stmt.query_map([], |r| Ok(((ms(r.get(0)?), r.get(1)?), r.get(2)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(got, want, "every row counted once after both replays");
}

/// Defect 10: a 300 MB line was read whole and stored whole, at 1.45 GB peak memory. Now a
/// record past `max_record_bytes` (default 4 MiB) is a dead letter with its size, its
/// first KiB and its digest, read in bounded memory, and the records after it count.
#[test]
fn an_oversize_record_is_a_dead_letter_read_in_bounded_memory() {
    use std::io::Write;
    let dir = setup(Shape::Tumbling, &lines(&[Some(("Oslo", 1, T0))]));
    let path = dir.path().join("input/trips.jsonl");
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    let huge = 200usize << 20;
    let chunk = vec![b'x'; 1 << 20];
    f.write_all(b"{\"city\":\"").unwrap();
    for _ in 0..huge >> 20 {
        f.write_all(&chunk).unwrap();
    }
    f.write_all(b"\"}\n").unwrap();
    f.write_all(file(&lines(&[Some(("Oslo", 2, T0 + 1_000))])).as_bytes()).unwrap();
    drop(f);

    let out = weir(dir.path(), &["run", "p.toml", "--no-admin", "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8_lossy(&out.stdout);
    let rss: f64 = summary.split("peak RSS ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!(rss < 150.0, "peak RSS {rss} MiB for a {} MiB record: {summary}", huge >> 20);
    let conn = Connection::open(dir.path().join("out.db")).unwrap();
    let (reason, raw): (String, Vec<u8>) =
        conn.query_row("SELECT reason, raw FROM weir_dead_letters", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert!(reason.contains(&format!("record of {} bytes", huge + 11)) && reason.contains("sha256"), "{reason}");
    assert_eq!(raw.len(), 1024);
    let (trips, sum): (i64, f64) =
        conn.query_row("SELECT trips, sum_fare FROM trips", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((trips, sum), (2, 3.0), "the records on both sides count");
}

/// Part of #27: a value the sink cannot hold costs its record, never the pipeline. A NUL
/// in a key (escaped or raw) and a 300 kB key are dead letters that say why; a reason
/// that quotes a NUL is stored. On PostgreSQL, where each of these stopped the pipeline
/// for good (`invalid byte sequence for encoding "UTF8": 0x00`, `index row size`).
#[test]
fn a_key_the_sink_cannot_hold_is_a_dead_letter_on_postgres() {
    let pg = weir_tests::services::Postgres::start();
    let url = pg.create_database("keys");
    let dir = setup(Shape::Tumbling, &[]);
    let at = |s: i64| weir_sdk::time::format_iso8601(T0 + s * 1_000);
    let big = "x".repeat(300_000);
    let input = [
        format!("{{\"city\":\"Oslo\",\"fare\":1,\"event_time\":\"{}\"}}", at(0)),
        format!("{{\"city\":\"Nul\\u0000City\",\"fare\":2,\"event_time\":\"{}\"}}", at(1)),
        format!("{{\"city\":\"{big}\",\"fare\":3,\"event_time\":\"{}\"}}", at(2)),
        format!("{{\"city\":\"Lima\",\"fare\":4,\"event_time\":\"{}\"}}", at(3)),
    ];
    std::fs::write(dir.path().join("input/trips.jsonl"), input.join("\n") + "\n").unwrap();
    std::fs::write(dir.path().join("p.toml"), pipeline(Shape::Tumbling, &url, "1s")).unwrap();
    run(dir.path(), 2);
    let mut client = pg.client("keys");
    let rows: Vec<(String, i64)> = client
        .query("SELECT city, trips FROM trips ORDER BY city", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [("Lima".to_string(), 1), ("Oslo".to_string(), 1)]);
    let dead: Vec<(String, String)> = client
        .query("SELECT plugin, reason FROM weir_dead_letters ORDER BY source_offset", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead[0].1.contains("NUL byte") && dead[0].0 == "window", "{dead:?}");
    assert!(dead[1].1.contains("300000 bytes long") && dead[1].1.contains("window.max_key_bytes"), "{dead:?}");
}

/// #27, item 3: one time with the offset `-99:99` was read as four days ahead and sent
/// the next 13,616 good records to the late lane. It is no time: that record alone is a
/// dead letter, and nothing is late.
#[test]
fn an_offset_out_of_range_costs_its_record_and_makes_nothing_late() {
    let dir = setup(Shape::Tumbling, &[]);
    let text: String = (0..30_000i64)
        .map(|i| {
            let time = weir_sdk::time::format_iso8601(T0 + i * 100);
            let time = if i == 10_000 { time.replace('Z', "-99:99") } else { time };
            format!("{{\"city\":\"Oslo\",\"fare\":1,\"event_time\":\"{time}\"}}\n")
        })
        .collect();
    std::fs::write(dir.path().join("input/trips.jsonl"), text).unwrap();
    run(dir.path(), 8192);
    let conn = Connection::open(dir.path().join("out.db")).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT sum(trips) FROM trips"), 29_999);
    assert_eq!(count("SELECT count(*) FROM weir_dead_letters"), 1);
    assert_eq!(count("SELECT count(*) FROM weir_late_events"), 0);
}

/// #27, item 4: records seen = windowed + dead letters + late, for JSON lines with hopping
/// windows (a record late for some of its windows counts as windowed) and for CSV rows the
/// file reader refuses, each number against the input.
#[test]
fn counts_add_up_for_hopping_windows_and_refused_csv_rows() {
    let input = lateness::random(5, 800);
    let want = truth(&input, Shape::Hopping, true);
    let dir = setup(Shape::Hopping, &input);
    let out = weir(dir.path(), &["run", "p.toml", "--quiet", "--no-admin", "--batch", "64"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let [records, windowed, dead, late] = summary_counts(&String::from_utf8_lossy(&out.stdout));
    let all_late = input
        .iter()
        .filter(|l| l.event.is_some() && want.late.iter().filter(|(o, _)| *o == l.offset).count() == 5)
        .count() as u64;
    assert_eq!(records, input.len() as u64);
    assert_eq!((dead, late), (want.dead.len() as u64, all_late));
    assert_eq!(records, windowed + dead + late);

    let dir = setup(Shape::Tumbling, &[]);
    let text = pipeline(Shape::Tumbling, "sqlite://out.db", "1s")
        .replace("path = \"input\"", "path = \"input\"\nformat = \"csv\"");
    std::fs::write(dir.path().join("p.toml"), text).unwrap();
    std::fs::remove_file(dir.path().join("input/trips.jsonl")).unwrap();
    let at = weir_sdk::time::format_iso8601(T0);
    let csv = format!("city,fare,event_time\nOslo,1,{at}\nLima,2\n\"Pune,3,{at}\nKyiv,4,{at}\n");
    std::fs::write(dir.path().join("input/trips.csv"), csv).unwrap();
    let out = weir(dir.path(), &["run", "p.toml", "--quiet", "--no-admin"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let counts = summary_counts(&String::from_utf8_lossy(&out.stdout));
    // Oslo counts; `Lima,2` has a field too few; the unclosed quote swallows the rest of the file.
    assert_eq!(counts, [3, 1, 2, 0], "{}", String::from_utf8_lossy(&out.stdout));
}

/// #27, item 1: an `epoch_millis` time can say anything; one before the year 0 would make
/// a window PostgreSQL cannot store, and stopped the pipeline at commit. It is a dead letter.
#[test]
fn an_event_time_the_sink_cannot_store_is_a_dead_letter_on_postgres() {
    let pg = weir_tests::services::Postgres::start();
    let url = pg.create_database("times");
    let dir = setup(Shape::Tumbling, &[]);
    let text = pipeline(Shape::Tumbling, &url, "1s").replace("format = \"iso8601\"", "format = \"epoch_millis\"");
    std::fs::write(dir.path().join("p.toml"), text).unwrap();
    let lines = [T0, -9_000_000_000_000_000, T0 + 1_000]
        .map(|t| format!("{{\"city\":\"Oslo\",\"fare\":1,\"event_time\":{t}}}\n"))
        .concat();
    std::fs::write(dir.path().join("input/trips.jsonl"), lines).unwrap();
    run(dir.path(), 1);
    let mut client = pg.client("times");
    let trips: i64 = client.query_one("SELECT sum(trips)::bigint FROM trips", &[]).unwrap().get(0);
    let reason: String = client.query_one("SELECT reason FROM weir_dead_letters", &[]).unwrap().get(0);
    assert_eq!(trips, 2);
    assert!(reason.contains("before the year 0"), "{reason}");
}
