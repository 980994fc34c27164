//! The two messages between a parent and its child over the control socket: the `Bootstrap` the
//! parent sends a re-executed or fork-server child, and the `Report` every child sends back.

use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::entry::EntryPoint;
use crate::error::{Error, ErrorKind};
use crate::shm::Segment;
use crate::wire;

/// What the parent sends a re-executed or fork-server child.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Bootstrap {
    /// Whether the parent ignores SIGINT. The child takes that disposition, not the one a fork
    /// server inherited when it was launched, as a spawned child takes the parent's. The first
    /// field, so that the message's first byte is this bool (postcard: one byte, 0 or 1): a
    /// fork-server child applies it before it unblocks SIGINT, before decoding the rest.
    pub(crate) sigint_ignored: bool,
    pub(crate) entry: EntryPoint,
    pub(crate) name: String,
    pub(crate) ident: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
    pub(crate) args: Vec<u8>,
    /// How many of the frame's descriptors belong to the arguments (they come first).
    pub(crate) args_fds: u32,
    /// Whether the alive pipe's write end follows the argument descriptors.
    pub(crate) has_alive: bool,
    /// Whether the resource tracker's pipe comes last.
    pub(crate) has_tracker: bool,
    /// The function to run before the target (`logging::set_child_init`).
    pub(crate) init: Option<EntryPoint>,
    /// The most verbose level of `tracing` events forwarded to the parent (0: none). When not 0,
    /// the event channel's sending end follows the argument descriptors.
    pub(crate) log_level: u8,
}

/// What a child sends back when its target is done.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The target returned; the serialized value (the frame carries its descriptors).
    Returned(Vec<u8>),
    /// The target panicked.
    Panicked { message: String, location: Option<String> },
    /// The target could not run.
    Failed(String),
    /// A report whose encoding is larger than a control socket holds unread
    /// (`proc_os::socket::INLINE_RESULT_MAX`): its `len` encoded bytes are in anonymous memory,
    /// the frame's last descriptor. So a child never blocks on its report, and the parent need
    /// not read while it waits for the child's end.
    Spilled { len: u64 },
}

/// A report whose encoding fits this many bytes is encoded on the stack (far below
/// `proc_os::socket::INLINE_RESULT_MAX`, so it is never spilled).
const SMALL_REPORT: usize = 256;

/// Sends a report frame; the parent may be gone, which is not an error worth reporting. A large
/// report goes in anonymous memory (`Report::Spilled`); if that fails, a `Failed` report says
/// why.
pub(crate) fn send_report(ctl: &OwnedFd, report: &Report, fds: &[OwnedFd]) {
    // A small report is encoded on the stack: a child whose target allocates nothing allocates
    // nothing here either (see `run::run_decoded`).
    let mut small = [0u8; SMALL_REPORT];
    if let Ok(body) = crate::codec::to_slice(report, &mut small) {
        if let Err(e) = proc_os::frame::send_frame(ctl.as_fd(), body, fds) {
            tracing::debug!(error = %e, "could not send the result to the parent");
        }
        return;
    }
    let Ok(body) = crate::codec::to_vec(report) else { return };
    let mut fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let sent = if body.len() <= proc_os::socket::INLINE_RESULT_MAX {
        wire::send_frame(ctl.as_fd(), &body, &fds)
    } else {
        match spill(&body, fds.len()) {
            Ok((memory, spilled)) => {
                fds.push(memory.as_fd());
                wire::send_frame(ctl.as_fd(), &spilled, &fds)
            }
            Err(e) => {
                let failed =
                    Report::Failed(format!("cannot hand over a result of {} bytes: {e}", body.len()));
                let Ok(failed) = crate::codec::to_vec(&failed) else { return };
                wire::send_frame(ctl.as_fd(), &failed, &[])
            }
        }
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "could not send the result to the parent");
    }
}

/// Copies an encoded report into anonymous memory: the memory, and the `Spilled` report that
/// names it (encoded). `fds`: how many descriptors the report carries already.
fn spill(body: &[u8], fds: usize) -> Result<(Segment, Vec<u8>), String> {
    if fds >= wire::MAX_FDS {
        return Err(Error::new(ErrorKind::TooManyHandles(fds + 1)).to_string());
    }
    let memory = Segment::new(body.len()).map_err(|e| e.to_string())?;
    // SAFETY: the segment is `body.len()` bytes of memory mapped by this process only, so far;
    // `body` is a separate allocation.
    unsafe { std::ptr::copy_nonoverlapping(body.as_ptr(), memory.as_ptr(), body.len()) };
    let spilled =
        crate::codec::to_vec(&Report::Spilled { len: body.len() as u64 }).map_err(|e| e.to_string())?;
    Ok((memory, spilled))
}

/// Decodes a report frame's body, taking a spilled report's memory (the last descriptor) off
/// `fds`. `Err`: why the report cannot be read.
pub(crate) fn decode_report(body: &[u8], fds: &mut Vec<OwnedFd>) -> Result<Report, String> {
    let report: Report =
        crate::codec::from_bytes(body).map_err(|e| format!("garbled result message: {e}"))?;
    let Report::Spilled { len } = report else { return Ok(report) };
    let memory = fds.pop().ok_or("a large result came without its memory")?;
    let len = usize::try_from(len).map_err(|_| "a large result's length does not fit")?;
    // The length is checked against the memory's size, so no access can fault past its end.
    let memory = Segment::from_fd(memory, len).map_err(|e| format!("cannot read a large result: {e}"))?;
    // SAFETY: the segment maps `len` bytes, and the child that wrote them has sent its last word.
    let bytes = unsafe { std::slice::from_raw_parts(memory.as_ptr(), len) };
    match crate::codec::from_bytes(bytes) {
        Ok(Report::Spilled { .. }) => Err("a large result names another".to_owned()),
        Ok(report) => Ok(report),
        Err(e) => Err(format!("garbled result message: {e}")),
    }
}

/// A handle on an `Error` for reports the parent decodes.
pub(crate) fn report_error(report: &Report) -> Option<Error> {
    match report {
        Report::Returned(_) => None,
        Report::Panicked { message, location } => {
            Some(Error::new(ErrorKind::Panicked { message: message.clone(), location: location.clone() }))
        }
        Report::Failed(m) => Some(Error::new(ErrorKind::ChildFailed(m.clone()))),
        Report::Spilled { .. } => {
            Some(Error::new(ErrorKind::ChildFailed("a large result was not read".into())))
        }
    }
}

#[cfg(test)]
mod test {
    use proptest::prelude::*;
    use proptest::test_runner::Config;

    use super::*;

    prop_compose! {
        fn bootstrap()(
            sigint_ignored in any::<bool>(),
            offset in any::<i64>(),
            fingerprint in any::<u64>(),
            name in ".{0,30}",
            ident in prop::collection::vec(any::<u32>(), 0..6),
            daemon in any::<bool>(),
            parent_pid in any::<u32>(),
            parent_name in ".{0,30}",
            args in prop::collection::vec(any::<u8>(), 0..200),
            args_fds in any::<u32>(),
            has_alive in any::<bool>(),
            has_tracker in any::<bool>(),
            init in proptest::option::of((any::<i64>(), any::<u64>())),
            log_level in any::<u8>(),
        ) -> Bootstrap {
            Bootstrap {
                sigint_ignored,
                entry: EntryPoint::from_parts(offset, fingerprint),
                name,
                ident,
                daemon,
                parent_pid,
                parent_name,
                args,
                args_fds,
                has_alive,
                has_tracker,
                init: init.map(|(offset, fingerprint)| EntryPoint::from_parts(offset, fingerprint)),
                log_level,
            }
        }
    }

    fn report() -> impl Strategy<Value = Report> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200).prop_map(Report::Returned),
            (".{0,40}", proptest::option::of(".{0,40}"))
                .prop_map(|(message, location)| Report::Panicked { message, location }),
            ".{0,40}".prop_map(Report::Failed),
        ]
    }

    /// The fields that say something, for comparing a decoded bootstrap with the one sent.
    fn fields(b: &Bootstrap) -> String {
        format!("{b:?}")
    }

    proptest! {
        #![proptest_config(Config { cases: 256, failure_persistence: None, ..Config::default() })]

        /// Bootstrap and report messages come back as they were sent; every strict prefix is an
        /// error (a child or parent cut off mid-message is told so, not handed a short value).
        #[test]
        fn messages_round_trip_and_prefixes_fail(boot in bootstrap(), report in report()) {
            let bytes = crate::codec::to_vec(&boot).unwrap_or_default();
            let back: Bootstrap = crate::codec::from_bytes(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(fields(&back), fields(&boot));
            for cut in 0..bytes.len() {
                prop_assert!(crate::codec::from_bytes::<Bootstrap>(&bytes[..cut]).is_err());
            }
            let bytes = crate::codec::to_vec(&report).unwrap_or_default();
            let back: Report = crate::codec::from_bytes(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(format!("{back:?}"), format!("{report:?}"));
            for cut in 0..bytes.len() {
                prop_assert!(crate::codec::from_bytes::<Report>(&bytes[..cut]).is_err());
            }
        }

        /// Arbitrary bytes as either message: a value or an error, never a panic; a decoded
        /// bootstrap's entry point from garbage resolves to an error, never a fault.
        #[test]
        fn arbitrary_bytes_are_a_value_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(boot) = crate::codec::from_bytes::<Bootstrap>(&bytes) {
                let _ = boot.entry.resolve();
                let _ = boot.init.map(|init| init.resolve_addr());
            }
            let _ = crate::codec::from_bytes::<Report>(&bytes);
        }
    }

    /// Sends `report` with `fds` as a child does (on a non-blocking socket, so that a report that
    /// does not fit fails instead of hanging) and reads it back as the parent does.
    fn through_a_socket(report: &Report, fds: &[OwnedFd]) -> (Result<Report, String>, Vec<OwnedFd>) {
        let (parent, child) = proc_os::socket::socketpair().expect("socketpair");
        proc_os::fd::set_nonblocking(child.as_fd()).expect("non-blocking");
        send_report(&child, report, fds);
        drop(child);
        match wire::FrameReader::default().read(parent.as_fd(), true) {
            Ok(wire::Read::Frame(body, mut fds)) => (decode_report(&body, &mut fds), fds),
            other => panic!("no report frame: {other:?}"),
        }
    }

    /// A report larger than a socket holds unread travels in memory and comes back whole, after
    /// the value's own descriptors, which stay in order; a small one travels inline.
    #[test]
    fn large_reports_travel_in_memory() {
        let max = proc_os::socket::INLINE_RESULT_MAX;
        for len in [10, max - 16, max + 1, 1 << 20] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (read, write) = proc_os::fd::pipe().expect("pipe");
            let (back, fds) = through_a_socket(&Report::Returned(bytes.clone()), &[write]);
            match back {
                Ok(Report::Returned(b)) => assert!(b == bytes, "{len} bytes came back changed"),
                other => panic!("{len} bytes: {other:?}"),
            }
            // The value's descriptor is the pipe's write end: the memory was taken off.
            assert_eq!(fds.len(), 1, "{len} bytes");
            proc_os::fd::write_all(fds[0].as_fd(), b"x").expect("write");
            let mut got = [0u8; 1];
            assert_eq!(proc_os::fd::read(read.as_fd(), &mut got).ok(), Some(1));
        }
    }

    /// A spilled report without its memory, naming more bytes than its memory holds, or naming
    /// another spilled report is an error, never a fault.
    #[test]
    fn bad_spills_are_errors() {
        let spilled = |len| crate::codec::to_vec(&Report::Spilled { len }).expect("encode");
        assert!(decode_report(&spilled(10), &mut Vec::new()).is_err());
        let small = Segment::new(4096).expect("segment");
        let fd = small.as_fd().try_clone_to_owned().expect("dup");
        assert!(decode_report(&spilled(1 << 20), &mut vec![fd]).is_err());
        let (memory, outer) = spill(&spilled(5), 0).expect("spill");
        let fd = memory.as_fd().try_clone_to_owned().expect("dup");
        assert!(decode_report(&outer, &mut vec![fd]).is_err());
    }

    /// A fork-server child reads `sigint_ignored` as the message's first byte.
    #[test]
    fn the_first_byte_is_sigint_ignored() {
        for ignored in [false, true] {
            let boot = Bootstrap {
                sigint_ignored: ignored,
                entry: EntryPoint::from_parts(0, 0),
                name: "n".into(),
                ident: vec![1],
                daemon: false,
                parent_pid: 1,
                parent_name: "p".into(),
                args: vec![9; 3],
                args_fds: 0,
                has_alive: false,
                has_tracker: false,
                init: None,
                log_level: 0,
            };
            let bytes = crate::codec::to_vec(&boot).unwrap_or_default();
            assert_eq!(bytes.first(), Some(&u8::from(ignored)));
        }
    }
}
