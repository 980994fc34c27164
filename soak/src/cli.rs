//! The command line: the three roles and their flags.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{cycles, probe, round, run};

const USAGE: &str = "usage: soak run [--minutes N] [--seed S] [--cycles N] [--no-isolate]
       soak round --seed S --dir D
       soak cycles --method spawn|forkserver|fork --count N";

pub(crate) fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("soak: {e}\n{USAGE}");
            2
        }
    };
    std::process::exit(code);
}

/// A number in decimal or `0x` hexadecimal.
fn number(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("{text:?} is not a number: {e}"))
}

fn dispatch(args: &[String]) -> Result<i32, String> {
    let role = args.first().map_or("run", String::as_str);
    let mut flags = std::collections::BTreeMap::new();
    let mut no_isolate = false;
    let mut rest = args.iter().skip(usize::from(!args.is_empty() && !args[0].starts_with("--")));
    while let Some(flag) = rest.next() {
        if flag == "--no-isolate" {
            no_isolate = true;
            continue;
        }
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        flags.insert(flag.trim_start_matches("--").to_string(), value.clone());
    }
    let get = |k: &str| flags.get(k).map(String::as_str);
    match role {
        "run" | "--minutes" | "--seed" | "--cycles" | "--no-isolate" => {
            let minutes: f64 = match get("minutes") {
                Some(m) => m.parse().map_err(|e| format!("--minutes {m}: {e}"))?,
                None => 1.0,
            };
            let seed = match get("seed") {
                Some(s) => number(s)?,
                None => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
            };
            // The full 10,000 from ten minutes up; the one-minute profile does 1,000.
            let cycles = match get("cycles") {
                Some(c) => number(c)?,
                None if minutes >= 10.0 => 10_000,
                None => 1_000,
            };
            let opts = run::Options { minutes, seed, cycles, isolate: !no_isolate };
            // What the isolated copy runs: the same, with the seed fixed.
            let again = vec![
                "run".to_string(),
                "--minutes".into(),
                minutes.to_string(),
                "--seed".into(),
                format!("{seed:#x}"),
                "--cycles".into(),
                cycles.to_string(),
            ];
            Ok(run::main(&opts, &again))
        }
        "round" => {
            let seed = number(get("seed").ok_or("round needs --seed")?)?;
            let dir = PathBuf::from(get("dir").ok_or("round needs --dir")?);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let marker = std::env::var(probe::MARKER).unwrap_or_default();
            Ok(round::main(seed, dir, marker))
        }
        "cycles" => {
            let method = get("method").ok_or("cycles needs --method")?;
            let method = method.parse().map_err(|e| format!("--method {method}: {e}"))?;
            let count = number(get("count").ok_or("cycles needs --count")?)?;
            Ok(cycles::main(method, count))
        }
        other => Err(format!("unknown role {other:?}")),
    }
}
