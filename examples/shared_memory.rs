//! Python's `multiprocessing.shared_memory` tutorial demos: a `ShareableList` of mixed items set
//! in place, and a `SharedMemoryManager` whose list two processes fill, unlinked when the manager
//! shuts down.
//!
//! Run it with `cargo run --release --example shared_memory`.

use multiproc::manager::SharedMemoryManager;
use multiproc::shared_memory::{Item, ShareableList};
use multiproc::Process;

/// Python's `do_work(sl, start, stop)`: squares its part of the list in place.
fn do_work(list: ShareableList, start: usize, stop: usize) -> Result<(), String> {
    for i in start..stop {
        let Item::Int(v) = list.get(i).map_err(|e| e.to_string())? else { continue };
        list.set(i, v * v).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42])
    let a = ShareableList::create([
        Item::from("howdy"),
        Item::from(&b"HoWdY"[..]),
        Item::Float(-273.154),
        Item::Int(100),
        Item::None,
        Item::Bool(true),
        Item::Int(42),
    ])?;
    println!("a[2] = {:?}", a.get(2)?);
    a.set(2, -78.5)?;
    println!("a[2] = {:?}", a.get(2)?);
    a.set(2, "dry ice")?; // another type, as long as it fits the item's storage
    println!("a[2] = {:?}", a.get(2)?);
    match a.set(2, "larger than previously allocated storage space") {
        Err(e) if e.is_item_too_large() => println!("refused: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    println!("a[3] = {:?}, count(42) = {}, len = {}", a.get(3)?, a.count(&Item::Int(42))?, a.len());
    a.unlink()?;

    // with SharedMemoryManager() as smm: two processes square halves of a list of 0..2000
    let smm = SharedMemoryManager::start()?;
    let list = smm.shareable_list((0..2000).map(Item::Int))?;
    let halves = [(0, 1000), (1000, 2000)];
    let workers = halves
        .iter()
        .map(|&(start, stop)| Process::new(do_work, (list.try_clone()?, start, stop)).start())
        .collect::<Result<Vec<_>, _>>()?;
    for w in workers {
        w.join()??;
    }
    let total: i64 = list.to_vec()?.into_iter().filter_map(|i| i64::try_from(i).ok()).sum();
    println!("sum of squares of 0..2000 = {total}");
    let name = list.name().to_owned();
    smm.shutdown()?;
    println!("after shutdown, {name} exists: {}", ShareableList::open(&name).is_ok());
    Ok(())
}
