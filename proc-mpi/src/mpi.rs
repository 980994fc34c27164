//! The [`Transport`] on MPI: `MPI_COMM_WORLD`, one tag, `MPI_Isend` (the buffer is kept until
//! `MPI_Test` says it went) and `MPI_Iprobe` + `MPI_Recv` of a probed message, so no call waits
//! for a peer. Calls go through `mpi::ffi` (rsmpi's bindings), whose return codes rsmpi's safe
//! layer ignores; the world's error handler is `MPI_ERRORS_RETURN`, so a failure is a code here
//! where the MPI library can report one at all.
//!
//! MPI is initialized with `MPI_THREAD_SERIALIZED`: one thread at a time calls it (the world is
//! behind a mutex, and a session's engine takes it out while it runs).

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::ptr;
use std::time::{Duration, Instant};

use mpi::ffi;

use crate::transport::{LinkError, Message, Transport, HEAD, MAX_MESSAGE};

/// The one tag of multiproc's messages.
const TAG: c_int = 0x6d70;

/// This process' place in the MPI job.
pub(crate) struct Mpi {
    rank: u32,
    size: u32,
    host: String,
    /// Sends not completed yet, with the buffers they read from.
    sends: Vec<(ffi::MPI_Request, Vec<u8>, u32)>,
    /// Per sender, a message whose later parts have not all arrived: its parts so far, and how
    /// many are to come.
    partial: HashMap<u32, (Vec<Vec<u8>>, u32)>,
}

// SAFETY: an `MPI_Request` is a handle (an integer in MPICH, a pointer to the library's request
// object in Open MPI) that the library lets any thread use under `MPI_THREAD_SERIALIZED`, as long
// as calls do not overlap; every call here takes `&mut self`, so one thread at a time makes them.
unsafe impl Send for Mpi {}

fn check(code: c_int, what: &str, rank: Option<u32>) -> Result<(), LinkError> {
    // MPI_SUCCESS is 0 in every MPI library.
    if code == 0 {
        Ok(())
    } else {
        Err(LinkError { rank, message: format!("{what} failed with MPI error code {code}") })
    }
}

impl Mpi {
    /// Joins the MPI job (`MPI_Init_thread` with `MPI_THREAD_SERIALIZED`).
    ///
    /// # Errors
    ///
    /// When MPI was initialized already or finalized, cannot be initialized, or does not
    /// support serialized threads.
    pub(crate) fn init() -> Result<Mpi, LinkError> {
        let mut flag: c_int = 0;
        // SAFETY: MPI_Initialized and MPI_Finalized may be called at any time, from any thread.
        check(unsafe { ffi::MPI_Finalized(&mut flag) }, "MPI_Finalized", None)?;
        if flag != 0 {
            return Err(LinkError {
                rank: None,
                message: "MPI was finalized already in this process".into(),
            });
        }
        // SAFETY: as above.
        check(unsafe { ffi::MPI_Initialized(&mut flag) }, "MPI_Initialized", None)?;
        if flag != 0 {
            return Err(LinkError {
                rank: None,
                message: "MPI was initialized by other code of this process; proc-mpi initializes it itself"
                    .into(),
            });
        }
        let mut provided: c_int = 0;
        // SAFETY: reading the extern constant is a plain load of a value the library set at load
        // time.
        let required = unsafe { ffi::RSMPI_THREAD_SERIALIZED };
        // SAFETY: null argc/argv are allowed (MPI-2); `provided` is a valid out-pointer; MPI is
        // neither initialized nor finalized (checked above).
        let code = unsafe { ffi::MPI_Init_thread(ptr::null_mut(), ptr::null_mut(), required, &mut provided) };
        check(code, "MPI_Init_thread", None)?;
        if provided < required {
            return Err(LinkError {
                rank: None,
                message: format!(
                    "this MPI library gives thread support {provided}, less than MPI_THREAD_SERIALIZED"
                ),
            });
        }
        // SAFETY: MPI is initialized; the world communicator and the error handler are the
        // library's constants.
        unsafe { ffi::MPI_Comm_set_errhandler(ffi::RSMPI_COMM_WORLD, ffi::RSMPI_ERRORS_RETURN) };
        let (mut rank, mut size): (c_int, c_int) = (0, 0);
        // SAFETY: MPI is initialized; valid out-pointers.
        check(unsafe { ffi::MPI_Comm_rank(ffi::RSMPI_COMM_WORLD, &mut rank) }, "MPI_Comm_rank", None)?;
        // SAFETY: as above.
        check(unsafe { ffi::MPI_Comm_size(ffi::RSMPI_COMM_WORLD, &mut size) }, "MPI_Comm_size", None)?;
        // SAFETY: reading the library's constant.
        let cap = unsafe { ffi::RSMPI_MAX_PROCESSOR_NAME }.max(1) as usize;
        let mut name = vec![0u8; cap + 1];
        let mut len: c_int = 0;
        // SAFETY: `name` has room for MPI_MAX_PROCESSOR_NAME characters and the NUL.
        let host = if unsafe { ffi::MPI_Get_processor_name(name.as_mut_ptr().cast(), &mut len) } == 0 {
            name.truncate((len.max(0) as usize).min(cap));
            String::from_utf8_lossy(&name).into_owned()
        } else {
            format!("rank {rank}")
        };
        Ok(Mpi { rank: rank as u32, size: size as u32, host, sends: Vec::new(), partial: HashMap::new() })
    }

    /// Leaves the job: waits (a bounded time) for the queued sends, then meets every rank in
    /// `MPI_Barrier` (all of them end together, after their last message) and calls
    /// `MPI_Finalize`, giving up after [`FINALIZE_WITHIN`].
    ///
    /// The bound is for MPICH 4.0 over TCP (UCX's `tcp` transport), whose finalize can hang for
    /// ever: it closes every connection before its last PMI barrier, and a close waits for an
    /// acknowledgement from a rank that may already wait in that barrier. Past the barrier every
    /// message of the job has arrived, so the process may then end without finalizing; the
    /// launcher still sees its exit status. With `MULTIPROC_MPI_FINALIZE=skip` every rank leaves
    /// right after the barrier, without `MPI_Finalize` (Hydra then ends the job cleanly; a rank
    /// that gives up in the middle of a finalize can make it fail).
    pub(crate) fn finalize(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !matches!(self.flush(), Ok(true) | Err(_)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(100));
        }
        let skip = std::env::var_os(FINALIZE_ENV).is_some_and(|v| v == "skip");
        let (tx, rx) = std::sync::mpsc::channel();
        let leave = move || {
            // SAFETY: MPI is initialized and not finalized; no other thread calls MPI now (the
            // owner of this value waits for this thread, and the value is never used again).
            let barrier = unsafe { ffi::MPI_Barrier(ffi::RSMPI_COMM_WORLD) };
            // SAFETY: as above.
            let code = if skip { 0 } else { unsafe { ffi::MPI_Finalize() } };
            let _ = tx.send((barrier, code));
        };
        if std::thread::Builder::new().name("mpi-finalize".into()).spawn(leave).is_err() {
            tracing::warn!("cannot start a thread to leave MPI; leaving without MPI_Finalize");
            return;
        }
        match rx.recv_timeout(FINALIZE_WITHIN) {
            Ok((0, 0)) => {}
            Ok((barrier, code)) => tracing::warn!(barrier, code, "leaving MPI failed"),
            Err(_) => {
                tracing::warn!("MPI_Finalize did not return within {FINALIZE_WITHIN:?}; exiting without it")
            }
        }
    }
}

impl Mpi {
    /// Starts sending one MPI message; its buffer is kept until the send completes.
    fn isend(&mut self, to: u32, bytes: Vec<u8>) -> Result<(), LinkError> {
        // SAFETY: reading the library's constant.
        let mut request = unsafe { ffi::RSMPI_REQUEST_NULL };
        // SAFETY: `bytes` stays alive and unmoved (its heap buffer) in `self.sends` until
        // MPI_Test reports the send complete; its length fits a C int (checked by `send`).
        let code = unsafe {
            ffi::MPI_Isend(
                bytes.as_ptr().cast::<c_void>(),
                bytes.len() as c_int,
                ffi::RSMPI_UINT8_T,
                to as c_int,
                TAG,
                ffi::RSMPI_COMM_WORLD,
                &mut request,
            )
        };
        check(code, "MPI_Isend", Some(to))?;
        self.sends.push((request, bytes, to));
        Ok(())
    }

    /// The next MPI message that has arrived, received straight into a buffer of its size.
    fn recv_one(&mut self) -> Result<Option<(u32, Vec<u8>)>, LinkError> {
        let mut flag: c_int = 0;
        let mut status = zeroed_status();
        // SAFETY: MPI is initialized; valid out-pointers.
        let code = unsafe {
            ffi::MPI_Iprobe(ffi::RSMPI_ANY_SOURCE, TAG, ffi::RSMPI_COMM_WORLD, &mut flag, &mut status)
        };
        check(code, "MPI_Iprobe", None)?;
        if flag == 0 {
            return Ok(None);
        }
        let mut count: c_int = 0;
        // SAFETY: `status` was filled by the probe.
        check(unsafe { ffi::MPI_Get_count(&status, ffi::RSMPI_UINT8_T, &mut count) }, "MPI_Get_count", None)?;
        let from = status.MPI_SOURCE;
        let mut buf = vec![0u8; count.max(0) as usize];
        // SAFETY: `buf` has room for the `count` bytes of the probed message, which this receive
        // (same source and tag, one thread) takes.
        let code = unsafe {
            ffi::MPI_Recv(
                buf.as_mut_ptr().cast::<c_void>(),
                count,
                ffi::RSMPI_UINT8_T,
                from,
                TAG,
                ffi::RSMPI_COMM_WORLD,
                ffi::RSMPI_STATUS_IGNORE,
            )
        };
        check(code, "MPI_Recv", Some(from as u32))?;
        Ok(Some((from as u32, buf)))
    }
}

/// `skip`: leave after the final barrier without `MPI_Finalize` (see [`Mpi::finalize`]).
const FINALIZE_ENV: &str = "MULTIPROC_MPI_FINALIZE";

/// How long leaving MPI may take (see [`Mpi::finalize`]).
const FINALIZE_WITHIN: Duration = Duration::from_secs(5);

impl Transport for Mpi {
    fn rank(&self) -> u32 {
        self.rank
    }

    fn size(&self) -> u32 {
        self.size
    }

    fn host(&self) -> String {
        self.host.clone()
    }

    fn send(&mut self, to: u32, mut parts: Vec<Vec<u8>>) -> Result<(), LinkError> {
        let more = u32::try_from(parts.len().saturating_sub(1))
            .map_err(|_| LinkError { rank: Some(to), message: "too many parts".into() })?;
        match parts.first_mut() {
            Some(first) if first.len() >= HEAD => first[..HEAD].copy_from_slice(&more.to_le_bytes()),
            _ => return Err(LinkError { rank: Some(to), message: "a message without its head".into() }),
        }
        if let Some(big) = parts.iter().find(|p| p.len() > MAX_MESSAGE) {
            return Err(LinkError {
                rank: Some(to),
                message: format!("a message of {} bytes is over MPI's limit", big.len()),
            });
        }
        for bytes in parts {
            self.isend(to, bytes)?;
        }
        Ok(())
    }

    fn try_recv(&mut self) -> Result<Option<Message>, LinkError> {
        while let Some((from, bytes)) = self.recv_one()? {
            if let Some((parts, left)) = self.partial.get_mut(&from) {
                parts.push(bytes);
                *left -= 1;
                if *left == 0 {
                    let parts = self.partial.remove(&from).map(|(p, _)| p).unwrap_or_default();
                    return Ok(Some((from, parts)));
                }
                continue;
            }
            let more = match bytes.get(..HEAD) {
                Some(head) => u32::from_le_bytes([head[0], head[1], head[2], head[3]]),
                None => {
                    return Err(LinkError { rank: Some(from), message: "a message without its head".into() })
                }
            };
            if more == 0 {
                return Ok(Some((from, vec![bytes])));
            }
            self.partial.insert(from, (vec![bytes], more));
        }
        Ok(None)
    }

    fn close(mut self: Box<Self>) {
        self.finalize();
    }

    fn flush(&mut self) -> Result<bool, LinkError> {
        let mut failed = None;
        self.sends.retain_mut(|(request, _, to)| {
            let mut flag: c_int = 0;
            // SAFETY: `request` came from MPI_Isend and was not completed yet.
            let code = unsafe { ffi::MPI_Test(request, &mut flag, ffi::RSMPI_STATUS_IGNORE) };
            if code != 0 {
                failed.get_or_insert(LinkError {
                    rank: Some(*to),
                    message: format!("a send failed with MPI error code {code}"),
                });
                return false;
            }
            flag == 0
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(self.sends.is_empty()),
        }
    }
}

/// An all-zero `MPI_Status` (a plain C struct of integers in every MPI library).
fn zeroed_status() -> ffi::MPI_Status {
    // SAFETY: MPI_Status is a C struct of integer fields, for which all zeros is a valid value.
    unsafe { std::mem::zeroed() }
}
