//! The tracker's bookkeeping: registrations, groups, purges and the warning's wording.

use super::Registry;

#[test]
fn groups_are_purged_and_warnings_name_what_happened() {
    let mut r = Registry::default();
    for line in [
        "R /mpt_tracker_a 10",
        "R /mpt_tracker_b 11",
        "G /mpt_tracker_b 7",
        "R /mpt_tracker_c 12",
        "G /mpt_tracker_c 7",
        "R /mpt_tracker_d 13",
        "U /mpt_tracker_d",
        "R /mpt_tracker_e 14",
        "G /mpt_tracker_e 8",
        "T 14",
        "garbage",
        "P not-a-number",
    ] {
        r.apply(line);
    }
    let mut live: Vec<&str> = r.live.keys().map(String::as_str).collect();
    live.sort_unstable();
    assert_eq!(live, ["/mpt_tracker_a", "/mpt_tracker_b", "/mpt_tracker_c", "/mpt_tracker_e"]);
    // The group's segments go (their names exist nowhere: unlinking them is a no-op here).
    r.apply("P 7");
    let mut live: Vec<&str> = r.live.keys().map(String::as_str).collect();
    live.sort_unstable();
    assert_eq!(live, ["/mpt_tracker_a", "/mpt_tracker_e"]);
    assert_eq!(r.why(&r.live["/mpt_tracker_a"]), "created by process 10, which exited without unlinking it");
    assert_eq!(
        r.why(&r.live["/mpt_tracker_e"]),
        "a queue's large message, created by process 14, which multiproc terminated before it could unlink it"
    );
    // A line without a pid (an older writer) still registers.
    r.apply("R /mpt_tracker_f");
    assert_eq!(r.why(&r.live["/mpt_tracker_f"]), "its creator exited without unlinking it");
    // A name with spaces is one name; its pid is the last word.
    r.apply("R /mpt tracker g 15");
    r.apply("G /mpt tracker g 9");
    assert_eq!(
        r.why(&r.live["/mpt tracker g"]),
        "a queue's large message, created by process 15, which exited without unlinking it"
    );
    r.apply("U /mpt tracker g");
    assert!(!r.live.contains_key("/mpt tracker g"));
    assert!(!r.live.contains_key("/mpt"));
}

#[test]
fn directories_are_registered_once_and_only_absolute_ones() {
    let mut r = Registry::default();
    for line in
        ["D /tmp/multiproc-manager-1-ab", "D /tmp/multiproc-manager-1-ab", "D relative/dir", "D /tmp/a b"]
    {
        r.apply(line);
    }
    let dirs: Vec<_> = r.dirs.iter().map(|d| d.to_str().unwrap()).collect();
    assert_eq!(dirs, ["/tmp/multiproc-manager-1-ab", "/tmp/a b"]);
}
