//! A pool or manager error caused by the operating system leads, through
//! `std::error::Error::source`, to the OS error itself.
//!
//! One test in this binary: it lowers the process' descriptor limit.

#![allow(clippy::unwrap_used)]

use std::io;

use multiproc::manager::Address;
use multiproc::{Manager, Pool};

/// The first `io::Error` on the chain of `e`'s sources, `e` included.
fn os_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        next = e.source();
    }
    None
}

/// Sets the soft limit on descriptors, returning the old one.
fn set_nofile(soft: libc::rlim_t) -> libc::rlim_t {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable `rlimit`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let old = lim.rlim_cur;
    lim.rlim_cur = soft;
    // SAFETY: `lim` is a valid `rlimit`, its soft limit at most its hard one.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0, "{}", io::Error::last_os_error());
    old
}

#[test]
fn sources_reach_the_os_error() {
    // A manager that is not there: the connection's io::Error is the source.
    let missing = std::env::temp_dir().join(format!("multiproc-no-such-manager-{}", std::process::id()));
    let err: multiproc::Error =
        Manager::connect(&Address::Unix(missing), b"a key of sixteen bytes or more").unwrap_err().into();
    assert!(matches!(err, multiproc::Error::Manager(_)), "{err:?}");
    let os = os_cause(&err).unwrap_or_else(|| panic!("no io::Error under {err:?}"));
    assert_eq!(os.kind(), io::ErrorKind::NotFound, "{os}");

    // A pool that cannot get descriptors: every descriptor number is taken up to the limit.
    let mut fill = Vec::new();
    let old = set_nofile(64);
    while let Ok(f) = std::fs::File::open("/dev/null") {
        fill.push(f);
    }
    let result = Pool::new(2);
    drop(fill);
    set_nofile(old);
    let err: multiproc::Error = result.unwrap_err().into();
    assert!(matches!(&err, multiproc::Error::Pool(multiproc::pool::Error::Os { .. })), "{err:?}");
    let os = os_cause(&err).unwrap_or_else(|| panic!("no io::Error under {err:?}"));
    assert_eq!(os.raw_os_error(), Some(libc::EMFILE), "{os}");
}
