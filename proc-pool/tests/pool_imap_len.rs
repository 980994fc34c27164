//! `IMap`'s length: one item per input item (a failed chunk's error for each of its items), and
//! `IMap::exact`, an `ExactSizeIterator` for inputs of known length that yields exactly that many.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proc_pool::{Error, ExactIMap, Opts, Pool};
use test_support::{serial, Watchdog};

const LIMIT: Duration = Duration::from_secs(120);

fn fails_on_five(x: u64) -> u64 {
    assert!(x != 5, "five");
    x
}

/// What `indicatif`'s `ProgressIterator::progress` asks of an iterator.
fn needs_exact<I: ExactSizeIterator>(it: I) -> I {
    it
}

/// Takes every item, checking that `len` counts down by one each time; returns them.
fn drain<R: serde::de::DeserializeOwned + Send + 'static>(mut it: ExactIMap<'_, R>) -> Vec<Result<R, Error>> {
    let mut items = Vec::new();
    let mut left = it.len();
    while let Some(item) = it.next() {
        items.push(item);
        left -= 1;
        assert_eq!(it.len(), left);
    }
    assert_eq!(left, 0);
    items
}

#[test]
fn an_imap_over_an_input_of_known_length_is_exact_size() {
    let _g = serial();
    let _w = Watchdog::new("imap_exact", LIMIT);
    let pool = Pool::new(2).unwrap();
    let it = needs_exact(pool.imap(fails_on_five, 0..20u64).exact().unwrap());
    assert_eq!(it.len(), 20);
    let items = drain(it);
    assert_eq!(items.len(), 20);
    assert!(matches!(&items[5], Err(Error::Panicked { .. })));
    assert_eq!(items.iter().filter(|r| r.is_err()).count(), 1);

    // A chunk that fails yields its error for each of its items: 4..8 fail together.
    for ordered in [true, false] {
        let it = if ordered {
            pool.imap_with(fails_on_five, 0..20u64, Opts::new().chunksize(4))
        } else {
            pool.imap_unordered_with(fails_on_five, 0..20u64, Opts::new().chunksize(4))
        };
        assert_eq!(it.size_hint(), (0, Some(20)));
        let items = drain(it.exact().unwrap());
        assert_eq!(items.len(), 20, "ordered: {ordered}");
        assert_eq!(items.iter().filter(|r| r.is_err()).count(), 4, "ordered: {ordered}");
        if ordered {
            assert!(items[4..8].iter().all(Result::is_err));
        }
    }
    // The plain IMap yields as many items too.
    assert_eq!(pool.imap_with(fails_on_five, 0..18u64, Opts::new().chunksize(4)).count(), 18);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn an_exact_imap_that_ends_early_reports_the_items_not_run() {
    let _g = serial();
    let _w = Watchdog::new("imap_exact_early", LIMIT);
    let pool = Pool::new(2).unwrap();
    // The input fails at its third item: the plain IMap ends with that error; the exact one
    // reports it for the fourth item too.
    let input = || vec![Ok(1u64), Ok(2), Err("bad input"), Ok(4)];
    let plain: Vec<_> = pool.try_imap(fails_on_five, input()).collect();
    assert_eq!(plain.len(), 3);
    let exact = drain(pool.try_imap(fails_on_five, input()).exact().unwrap());
    assert_eq!(exact.len(), 4);
    assert!(matches!(&exact[0], Ok(1)));
    assert!(matches!(&exact[1], Ok(2)));
    assert!(exact[2..].iter().all(|r| matches!(r, Err(Error::Input(m)) if m == "bad input")), "{exact:?}");

    // An input of unknown length is handed back.
    let it = pool.imap(fails_on_five, (0..10u64).filter(|x| x % 2 == 0));
    let it = it.exact().unwrap_err();
    assert_eq!(it.map(Result::unwrap).collect::<Vec<_>>(), [0, 2, 4, 6, 8]);
    pool.close();
    pool.join().unwrap();
}
