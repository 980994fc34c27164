//! The `init()` fallback: a binary whose child dispatcher constructor did not run (here: switched
//! off with `MULTIPROC_DISPATCHER=off`) still starts processes if `main` calls `init()` first.

fn triple(x: i32) -> i32 {
    x * 3
}

fn main() {
    proc_core::init();
    let p = proc_core::get_context(proc_core::StartMethod::Spawn).process(triple, (14,)).start();
    match p.and_then(|p| p.join()) {
        Ok(v) => println!("child returned {v}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
