//! `ShareableList`: typed items in one named segment, shared with children under every start
//! method, storage limits, and lists whose memory holds garbage.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{methods, serial, Watchdog};
use proc_core::get_context;
use proc_core::shm::{Item, ShareableList, SharedMemory};

const LIMIT: Duration = Duration::from_secs(120);

fn sample() -> Vec<Item> {
    vec![
        Item::Int(-5),
        Item::Float(0.25),
        Item::Bool(true),
        Item::from("text"),
        Item::Bytes(vec![0, 1, 2, 255]),
        Item::None,
        Item::from("a longer text of more than eight bytes"),
    ]
}

#[test]
fn items_read_back_as_made_and_set() {
    let list = ShareableList::create(sample()).unwrap();
    assert_eq!(list.len(), 7);
    assert_eq!(list.to_vec().unwrap(), sample());
    // Another type in the same storage; a number where `None` was.
    list.set(0, "eight ch").unwrap();
    list.set(5, 3.5).unwrap();
    list.set(2, Item::None).unwrap();
    assert_eq!(list.get(0).unwrap(), Item::from("eight ch"));
    assert_eq!(list.get(5).unwrap(), Item::Float(3.5));
    assert_eq!(list.get(2).unwrap(), Item::None);
    assert_eq!(list.count(&Item::Float(0.25)).unwrap(), 1);
    assert_eq!(list.index(&Item::Float(3.5)).unwrap(), Some(5));
    assert_eq!(list.index(&Item::Int(99)).unwrap(), None);
    // Text's storage is its length rounded up to 8: "text" has 8, the long text 40.
    assert!(list.set(3, "nine char").unwrap_err().is_item_too_large());
    list.set(6, vec![7u8; 40]).unwrap();
    assert!(list.set(6, vec![7u8; 41]).unwrap_err().is_item_too_large());
    assert_eq!(list.get(3).unwrap(), Item::from("text"), "a refused set changes nothing");
    let err = list.get(7).unwrap_err();
    assert!(err.is_index_out_of_range() && err.is_invalid_input(), "{err}");
    assert!(list.set(usize::MAX, 1).unwrap_err().is_index_out_of_range());
    let empty = ShareableList::create(Vec::<Item>::new()).unwrap();
    assert!(empty.is_empty() && empty.to_vec().unwrap().is_empty());
    list.unlink().unwrap();
    empty.unlink().unwrap();
}

#[test]
fn opened_by_name_sees_the_same_items() {
    let name = format!("mpt_sl_{}", std::process::id());
    let list = ShareableList::create_named(&name, [1, 2, 3]).unwrap();
    let other = ShareableList::open(&name).unwrap();
    other.set(1, 20).unwrap();
    assert_eq!(list.get(1).unwrap(), Item::Int(20));
    assert!(ShareableList::create_named(&name, [1]).unwrap_err().is_already_exists());
    list.unlink().unwrap();
    assert!(ShareableList::open(&name).unwrap_err().is_not_found());
    // The open handles still work after the name is gone.
    assert_eq!(other.to_vec().unwrap(), [Item::Int(1), Item::Int(20), Item::Int(3)]);
}

/// The child's side: doubles every integer, and says how many items it saw.
fn double_ints(list: ShareableList) -> usize {
    for i in 0..list.len() {
        if let Item::Int(v) = list.get(i).unwrap() {
            list.set(i, v * 2).unwrap();
        }
    }
    list.len()
}

#[test]
fn a_child_sets_items_the_parent_reads_under_every_start_method() {
    let _s = serial();
    let _w = Watchdog::new("shareable_list_child", LIMIT);
    let list = ShareableList::create([Item::Int(1), Item::from("x"), Item::Int(-4)]).unwrap();
    let mut expected = [1, -4];
    for m in methods() {
        let p = get_context(m).process(double_ints, (list.try_clone().unwrap(),)).start().unwrap();
        assert_eq!(p.join().unwrap(), 3, "{m:?}");
        expected = expected.map(|v| v * 2);
        assert_eq!(list.to_vec().unwrap(), [Item::Int(expected[0]), Item::from("x"), Item::Int(expected[1])]);
    }
    list.unlink().unwrap();
}

#[test]
fn a_segment_that_is_not_a_list_is_refused() {
    let shm = SharedMemory::create(64).unwrap();
    let err = ShareableList::open(shm.name()).unwrap_err();
    assert!(err.is_not_shareable_list(), "{err}");
    // A header that claims more items than the segment holds.
    shm.write(0, b"MPSLIST1").unwrap();
    shm.write(8, &u32::MAX.to_ne_bytes()).unwrap();
    assert!(ShareableList::open(shm.name()).unwrap_err().is_not_shareable_list());
    shm.unlink().unwrap();
}

/// Every byte of the header and descriptors, and of the items' storage, set to values that
/// matter (0, 1, 0x7f, 0x80, 0xff): every read gives an item or a typed error, never a panic or
/// a read outside the segment; and setting the byte back restores the list.
#[test]
fn garbage_in_the_segment_gives_errors_not_panics() {
    let list = ShareableList::create(sample()).unwrap();
    let shm = SharedMemory::open(list.name()).unwrap();
    let size = shm.size();
    let mut original = vec![0u8; size];
    shm.read(0, &mut original).unwrap();
    for at in 0..size {
        for value in [0u8, 1, 0x7f, 0x80, 0xff] {
            shm.write(at, &[value]).unwrap();
            match ShareableList::open(list.name()) {
                Ok(opened) => {
                    for i in 0..opened.len() {
                        if let Err(e) = opened.get(i) {
                            assert!(e.is_not_shareable_list(), "byte {at} = {value:#x}, item {i}: {e}");
                        }
                    }
                }
                Err(e) => assert!(e.is_not_shareable_list(), "byte {at} = {value:#x}: {e}"),
            }
            shm.write(at, &original[at..=at]).unwrap();
        }
    }
    assert_eq!(list.to_vec().unwrap(), sample());
    list.unlink().unwrap();
}
