//! An async pipeline, as `aiomultiprocess` gives Python: a tokio program hands CPU-bound work to
//! worker processes through a `Queue`, awaits their results on another without blocking its
//! runtime (while a timer task keeps ticking), and awaits the workers' exits.
//!
//! Run it with `cargo run --release --example async_pipeline --features tokio`.

use std::time::Duration;

use multiproc::{Process, Queue};

/// A worker process: squares numbers until it gets `None`, and says how many it did.
fn worker(jobs: Queue<Option<u64>>, results: Queue<(u64, u64)>) -> usize {
    let mut done = 0;
    while let Ok(Some(n)) = jobs.get() {
        // Stand-in for CPU-bound work.
        let square = (0..n).fold(0u64, |acc, _| acc + n);
        if results.put((n, square)).is_err() {
            break;
        }
        done += 1;
    }
    done
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    const JOBS: u64 = 200;
    const WORKERS: usize = 3;
    let jobs = Queue::new(16)?;
    let results = Queue::unbounded()?;
    let workers = (0..WORKERS)
        .map(|_| Process::new(worker, (jobs.clone(), results.clone())).start())
        .collect::<Result<Vec<_>, _>>()?;

    // The runtime stays free: a timer task runs while the results come in.
    let ticker = tokio::spawn(async {
        let mut ticks = 0u32;
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            ticks += 1;
            if ticks == 1_000_000 {
                return ticks;
            }
        }
    });

    // Feed the workers from a blocking thread (a bounded put may wait for room).
    let feeder = {
        let jobs = jobs.clone();
        std::thread::spawn(move || -> Result<(), multiproc::PutError<Option<u64>>> {
            for n in 1..=JOBS {
                jobs.put(Some(n))?;
            }
            for _ in 0..WORKERS {
                jobs.put(None)?;
            }
            Ok(())
        })
    };

    let mut total = 0u64;
    for _ in 0..JOBS {
        let (n, square) = results.get_async().await?;
        assert_eq!(square, n * n);
        total += square;
    }
    feeder.join().map_err(|_| "the feeder panicked")??;
    let mut done = 0;
    for w in &workers {
        done += w.join_async().await?;
    }
    ticker.abort();
    println!("{done} jobs by {WORKERS} processes, sum of squares {total}");
    Ok(())
}
