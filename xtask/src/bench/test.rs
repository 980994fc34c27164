//! Where `cargo xtask bench` finds criterion's results, and what it does when one is missing.

use super::{metadata_target_dir, table, PythonFigures, Results, BENCH_FILES};
use crate::root;
use std::path::Path;
use std::time::SystemTime;

#[test]
fn the_target_directory_follows_cargo_target_dir() {
    let elsewhere = std::env::temp_dir().join("multiproc-xtask-target-dir-test");
    assert_eq!(metadata_target_dir(Some(&elsewhere)).unwrap(), elsewhere);
    let default = metadata_target_dir(None).unwrap();
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        assert_eq!(default, root().join("target"));
    }
}

#[test]
fn a_benchmark_without_a_result_is_reported_missing() {
    let dir = std::env::temp_dir().join(format!("multiproc-xtask-results-{}", std::process::id()));
    let file = &BENCH_FILES[0];
    let row = &file.rows[0];
    let group = |pin: &str| {
        if file.both_backends {
            format!("{}_default_{pin}", row.scenario)
        } else {
            format!("{}_{pin}", row.scenario)
        }
    };
    // One result written by "this run": that one is found, every other is missing.
    let since = SystemTime::now() - std::time::Duration::from_secs(1);
    let found = Path::new(&dir).join(group("free")).join(row.function).join("new");
    std::fs::create_dir_all(&found).unwrap();
    std::fs::write(found.join("estimates.json"), r#"{"mean":{"point_estimate":12.5}}"#).unwrap();
    let results = Results { criterion: &dir, since };
    assert_eq!(results.mean(&group("free"), row.function), Some(12.5));
    let mut md = String::new();
    let (missing, panels) = table(&mut md, file, &results, None, None).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let free = format!("{}/{}", group("free"), row.function);
    let pinned = format!("{}/{}", group("pinned"), row.function);
    assert!(!missing.contains(&free), "{missing:?}");
    assert!(missing.contains(&pinned), "{missing:?}");
    // The chart's figures: the free panel has the one result, the pinned one none.
    let first =
        |panel: usize| panels[panel].1.iter().find(|b| b.label.starts_with(row.label)).map(|b| b.values[0]);
    assert_eq!(first(0), Some(Some(12.5)));
    assert_eq!(first(1), Some(None));
}

/// Writes a criterion result (`<group>/<function>/new/estimates.json`) of `ns` nanoseconds.
fn put(dir: &Path, group: &str, function: &str, ns: f64) {
    let new = dir.join(group).join(function).join("new");
    std::fs::create_dir_all(&new).unwrap();
    std::fs::write(new.join("estimates.json"), format!(r#"{{"mean":{{"point_estimate":{ns}}}}}"#)).unwrap();
}

#[test]
fn a_run_with_every_result_fills_every_row_of_every_table() {
    let dir = std::env::temp_dir().join(format!("multiproc-xtask-full-{}", std::process::id()));
    let since = SystemTime::now() - std::time::Duration::from_secs(1);
    // A fake criterion directory holding every benchmark the tables name, on two backends where a
    // file runs on both: 10 ns free and 20 ns pinned, floors 5 ns; Python 100 ns for every key.
    let backends = |both: bool| if both { vec![Some("futex"), Some("polling")] } else { vec![None] };
    let group = |scenario: &str, backend: Option<&str>, pin: &str| match backend {
        Some(b) => format!("{scenario}_{b}_{pin}"),
        None => format!("{scenario}_{pin}"),
    };
    for floors in [false, true] {
        for file in BENCH_FILES {
            for row in file.rows {
                for backend in backends(file.both_backends) {
                    for (pin, ns) in [("free", 10.0), ("pinned", 20.0)] {
                        if floors {
                            let (scenario, function) =
                                row.floor.split_once('/').unwrap_or((row.scenario, row.floor));
                            put(&dir, &group(scenario, backend, pin), function, 5.0);
                        } else {
                            put(&dir, &group(row.scenario, backend, pin), row.function, ns);
                        }
                    }
                }
            }
        }
    }
    let results = Results { criterion: &dir, since };
    let mut all = String::new();
    for file in BENCH_FILES {
        let python: PythonFigures =
            file.rows.iter().filter(|r| !r.python.is_empty()).map(|r| (r.python.to_owned(), 100.0)).collect();
        let mut md = String::new();
        let (missing, panels) = table(&mut md, file, &results, Some(&python), Some(&python)).unwrap();
        assert!(missing.is_empty(), "{}: {missing:?}", file.name);
        // Every file's chart draws, with every row in both panels.
        let svg = dir.join(format!("{}.svg", file.name));
        super::chart::render(&svg, file.title, &panels).unwrap();
        assert!(panels.iter().all(|(_, bars)| bars.len() >= file.rows.len()), "{}", file.name);
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"), "{}", file.name);
        // The header, its rule, then one line per row and backend.
        let lines = md.lines().filter(|l| l.starts_with('|')).count();
        assert_eq!(lines, 2 + file.rows.len() * backends(file.both_backends).len(), "{md}");
        all.push_str(&md);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let line = "| Lock acquire+release, uncontended | futex | 10.0 ns | 20.0 ns | 100.0 ns | 100.0 ns \
                | 10.00× / 5.00× | 2.00× / 4.00× | floor_pthread_mutex: 5.0 ns / 5.0 ns | ≤ 3×: met / missed |";
    assert!(all.lines().any(|l| l == line), "{all}");
}
