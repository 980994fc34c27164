//! The two messages between a parent and its child over the control socket: the `Bootstrap` the
//! parent sends a re-executed or fork-server child, and the `Report` every child sends back.

use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::entry::EntryPoint;
use crate::error::{Error, ErrorKind};
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
}

/// Sends a report frame; the parent may be gone, which is not an error worth reporting.
pub(crate) fn send_report(ctl: &OwnedFd, report: &Report, fds: &[OwnedFd]) {
    let body = match crate::codec::to_vec(report) {
        Ok(b) => b,
        Err(_) => return,
    };
    let fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    if let Err(e) = wire::send_frame(ctl.as_fd(), &body, &fds) {
        tracing::debug!(error = %e, "could not send the result to the parent");
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
