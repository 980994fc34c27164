//! The wire format of a connection: one frame per message, descriptors beside the bytes.
//!
//! The frame is [`proc_os::frame`]'s, the format of proc-core's control sockets too: a 12-byte
//! header, the body's length as a little-endian `u64` then the number of descriptors as a
//! little-endian `u32`, followed by the body. A `u64` length represents any message a process can
//! hold, 4 GiB and more; an empty body is a frame like any other. The descriptors travel as
//! `SCM_RIGHTS` data of the `sendmsg` that carries the header, so the receiver gets them with the
//! header's first bytes. Sending is proc-os's [`send_frame`]; the reader below is this crate's own.
//!
//! The reader reads ahead: one `recvmsg` takes whatever the socket holds, up to 64 KiB, and the
//! frames in it are served from that buffer one by one, so a small message costs one system call.
//! The rest of a large body (16 KiB or more) is read straight into the body's buffer, never past its
//! frame, and after such a body the next header is read on its own, so a stream of large messages
//! is not copied through the buffer. Frames never merge or split whatever way the stream is cut,
//! because the header, not the read, bounds each one.
//!
//! Descriptors belong to a read, not to a byte, so the reader works out which frame a read's
//! descriptors came with. Each `sendmsg` of [`send_frame`] carries at most one frame, and its
//! descriptors only with the frame's first byte. Linux (`unix_stream_read_generic`) copies across
//! data without descriptors and stops right after data that carried some, so a read's descriptors
//! belong to the last frame starting in it; macOS and the BSDs hand control data over at the start
//! of a read and stop before the next data that has some, so they belong to the first frame starting
//! in it. One rule fits both: a read's descriptors belong to the frame starting in that read whose
//! header announces descriptors, and, when every whole header starting in it announces none, to the
//! frame whose header that read left incomplete. Descriptors that no frame claims (a sender that
//! broke the format) are closed; a frame that does not get the number it announces is reported as
//! having lost its descriptors. Descriptors that no frame claimed are closed at the latest when
//! the frame that was read past them ends, and that frame is refused (`InvalidData`): it arrived
//! with descriptors it did not announce, in its header's read or its body's.
//!
//! A read stopped by its deadline keeps what it got in [`Incoming`] and resumes there, so a
//! timeout never desynchronizes the stream.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use proc_os::frame::HEADER;

use crate::error::{Error, Result};

/// The size of the read-ahead buffer: the most one read takes beyond the frame it is reading.
const READ_AHEAD: usize = 64 << 10;

/// A rest of a body at least this long is read straight into the body's buffer (no copy out of
/// the read-ahead buffer); after such a body the next header is read on its own.
const DIRECT: usize = 16 << 10;

/// A timed receive with at least this long to go blocks in `recvmsg` (see [`recv_within`]).
const FAR: Duration = Duration::from_secs(1);

/// The receive timeout timed receives set on the socket: a blocking `recvmsg` gives up after this
/// long, so that the receive can keep its deadline. Far below [`FAR`], so that a timer that fires
/// late (by a clock tick or two) still leaves time to spare.
const SLICE: Duration = Duration::from_millis(100);

/// How long a receive looks for bytes without sleeping before it sleeps.
const LOOK: Duration = Duration::from_micros(100);

/// The first allocation for a body, and the smallest growth step.
const FIRST_CHUNK: usize = 64 << 10;

/// At most this many bytes per system call (some kernels refuse more than `INT_MAX` at once).
const MAX_CHUNK: usize = 1 << 30;

/// A body buffer larger than this is not kept for the next message.
const KEEP: usize = 16 << 20;

/// The most bytes of a body a typed read looks at to decide whether it is split: a varint's
/// longest encoding.
const PROBE: usize = 10;

/// Stack space for reading (and dropping) a body too large to hold.
const SCRATCH: usize = 8 << 10;

/// Sends one frame (proc-os's [`proc_os::frame::send_frame`]), blocking until all of it is written.
///
/// # Errors
///
/// `sendmsg` failed: `EPIPE` or `ECONNRESET` when the peer is gone.
#[inline]
pub(crate) fn send_frame(sock: BorrowedFd<'_>, body: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    proc_os::frame::send_frame(sock, body, fds)
}

/// A received message: its body (in the connection's buffer) and its descriptors. After a typed
/// read ([`Incoming::read_typed`]) the body may lie in two parts: the body is `prefix` followed by
/// `body` (a large byte string's encoded length, and its bytes at offset 0 of a buffer of their
/// own); after a raw read `prefix` is empty.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    pub(crate) prefix: &'a [u8],
    pub(crate) body: &'a mut Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// The receiving state of a connection: the bytes read ahead and the frame being read, kept
/// across deadlines.
#[derive(Debug)]
pub(crate) struct Incoming {
    header: [u8; HEADER],
    /// Bytes of the header received; 0 between frames.
    header_len: usize,
    /// The body's length, once the header is whole.
    len: u64,
    /// Bytes of the body received so far.
    received: u64,
    /// The body's bytes received so far. A receive lands in its unused capacity, which is never
    /// written first (no zeroes), and the allocation is reused for the next message (up to `KEEP`
    /// bytes), so a stream of large messages neither reallocates nor fills the buffer; a body taken
    /// away by its message (a typed byte string, `recv_bytes`) costs one allocation, not a fill.
    body: Vec<u8>,
    /// The body is larger than this process can hold; it is read and dropped.
    skipping: bool,
    fds: Vec<OwnedFd>,
    /// The descriptors of the frame just finished, for its message.
    fds_ready: Vec<OwnedFd>,
    /// Some of the frame's descriptors did not make it into this process.
    fds_lost: bool,
    /// The largest body this process tries to hold.
    limit: u64,
    /// The read-ahead buffer (allocated by the first read that uses it); `ahead[pos..end]` has
    /// been received and not yet served.
    ahead: Box<[u8]>,
    /// The first byte of `ahead` not yet served.
    pos: usize,
    /// The end of the bytes received into `ahead`.
    end: usize,
    /// The stream offset of the next byte to serve: bytes received from the socket so far, less
    /// those still waiting in `ahead`.
    offset: u64,
    /// The stream offset of the frame being read (of its header's first byte).
    frame_start: u64,
    /// Descriptors of reads into `ahead` that no frame has claimed yet, oldest first.
    unclaimed: VecDeque<Batch>,
    /// How the last receives went (see [`recv_within`]).
    pace: Pace,
    /// The last frame's body was at least [`DIRECT`] bytes long.
    large_last: bool,
    /// A typed read: a large body that is one byte string may be split (see [`Message`]).
    typed: bool,
    /// The frame's first bytes are still to be looked at for a split.
    probe: bool,
    /// The body's first `prefix_len` bytes, kept here when the body is split; the rest is in
    /// `body` from its offset 0.
    head: [u8; 10],
    prefix_len: usize,
}

/// The descriptors one read into the read-ahead buffer brought, and the stream bytes it covered.
#[derive(Debug)]
struct Batch {
    /// The stream offset of the read's first byte.
    start: u64,
    /// The stream offset just past the read's last byte.
    end: u64,
    fds: Vec<OwnedFd>,
    /// The kernel could not hand over all of the read's descriptors.
    lost: bool,
}

impl Default for Incoming {
    fn default() -> Self {
        Incoming {
            header: [0; HEADER],
            header_len: 0,
            len: 0,
            received: 0,
            body: Vec::new(),
            skipping: false,
            fds: Vec::new(),
            fds_ready: Vec::new(),
            fds_lost: false,
            limit: isize::MAX as u64,
            ahead: Box::default(),
            pos: 0,
            end: 0,
            offset: 0,
            frame_start: 0,
            unclaimed: VecDeque::new(),
            pace: Pace::default(),
            large_last: false,
            typed: false,
            probe: false,
            head: [0; 10],
            prefix_len: 0,
        }
    }
}

impl Incoming {
    /// A state that treats bodies longer than `limit` as too large.
    #[cfg(test)]
    fn with_limit(limit: u64) -> Self {
        Incoming { limit, ..Incoming::default() }
    }

    /// Whether bytes of the stream have been received and not yet returned as a message: part of
    /// a frame, or frames read ahead. The socket alone then no longer tells whether there is
    /// something to receive, and a copy of it would start in the middle of the stream.
    pub(crate) fn holds_data(&self) -> bool {
        self.header_len > 0 || self.pos < self.end
    }

    /// Reads until a whole message is in, or until `deadline` (`None`: as long as it takes; a
    /// deadline in the past: take only what is there already).
    ///
    /// # Errors
    ///
    /// - [`Error::Disconnected`]: the stream ended between frames.
    /// - [`Error::Truncated`]: the stream ended inside a frame; the part is dropped.
    /// - [`Error::Timeout`]: the deadline passed; the part received is kept for the next call.
    /// - [`Error::TooLarge`]: the frame was read and dropped.
    /// - [`Error::Os`]: a system call failed, or the frame (consumed) lost its descriptors or
    ///   came with descriptors that no frame announced (closed).
    pub(crate) fn read(&mut self, sock: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<Message<'_>> {
        self.typed = false;
        self.read_frame(sock, deadline)?;
        if self.prefix_len > 0 {
            // Split by an earlier typed read that ran out of time: whole again.
            self.body.splice(0..0, self.head[..self.prefix_len].iter().copied());
            self.prefix_len = 0;
        }
        self.message()
    }

    /// As [`read`](Self::read), for a typed receive: a body of at least
    /// [`FAST`](super::bytes::FAST) bytes that starts with a varint giving the length of the rest
    /// (a byte or text string, as postcard encodes one) comes back split: the varint in the
    /// message's `prefix`, the rest at offset 0 of its `body`, ready to be handed to the value
    /// without a copy.
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read).
    pub(crate) fn read_typed(
        &mut self,
        sock: BorrowedFd<'_>,
        deadline: Option<Instant>,
    ) -> Result<Message<'_>> {
        self.typed = true;
        self.read_frame(sock, deadline)?;
        self.message()
    }

    /// Reads until a whole frame is in (see [`read`](Self::read)).
    fn read_frame(&mut self, sock: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<()> {
        loop {
            if self.header_len < HEADER {
                if self.header_len == 0 {
                    self.begin();
                }
                // After a large body, the next header is read on its own: another large body that
                // follows it then goes straight into its buffer, not through this one. A typed read
                // takes the body's first bytes with it, which decide whether the body is split (one
                // receive fewer per message).
                let max = match (self.large_last, self.typed) {
                    (false, _) => READ_AHEAD,
                    (true, false) => HEADER - self.header_len,
                    (true, true) => HEADER - self.header_len + PROBE,
                };
                if self.pos == self.end && self.fill(sock, deadline, max)? == 0 {
                    return Err(if self.header_len == 0 { Error::Disconnected } else { self.truncated() });
                }
                let n = (HEADER - self.header_len).min(self.end - self.pos);
                self.header[self.header_len..self.header_len + n]
                    .copy_from_slice(&self.ahead[self.pos..self.pos + n]);
                self.serve(n);
                self.header_len += n;
                if self.header_len == HEADER {
                    self.len = self.header_fields().0;
                    self.skipping = self.len > self.limit || usize::try_from(self.len).is_err();
                    self.probe = self.typed && !self.skipping && self.len > super::bytes::FAST as u64;
                    self.claim();
                }
                continue;
            }
            if self.probe {
                // The body's first bytes decide whether it is split (at most `PROBE`, never past it).
                if self.pos == self.end && self.fill(sock, deadline, PROBE)? == 0 {
                    return Err(self.truncated());
                }
                self.probe = false;
                let look = &self.ahead[self.pos..self.end.min(self.pos + PROBE)];
                if let Some((rest, k)) = super::bytes::read_varint(look) {
                    if rest == self.len - k as u64 {
                        self.head[..k].copy_from_slice(&look[..k]);
                        self.serve(k);
                        self.received += k as u64;
                        self.prefix_len = k;
                    }
                }
                continue;
            }
            if self.received == self.len {
                return self.finish();
            }
            let left = self.len - self.received;
            if self.pos < self.end {
                // Not more than the buffer holds, so it fits in a usize.
                let n = usize::try_from(left).map_or(self.end - self.pos, |l| l.min(self.end - self.pos));
                if !self.skipping && !self.make_room(n) {
                    // Out of memory: drop what is here and read the rest of the frame away.
                    self.body = Vec::new();
                    self.skipping = true;
                    continue;
                }
                if !self.skipping {
                    // Within the capacity `make_room` made: no reallocation.
                    self.body.extend_from_slice(&self.ahead[self.pos..self.pos + n]);
                }
                self.serve(n);
                self.received += n as u64;
                continue;
            }
            if left < DIRECT as u64 {
                // The end of the frame, and whatever follows it, in one read.
                if self.fill(sock, deadline, READ_AHEAD)? == 0 {
                    return Err(self.truncated());
                }
                continue;
            }
            // A large rest of a body goes straight where it belongs, never past the frame.
            let got = if self.skipping {
                let mut scratch = [0u8; SCRATCH];
                let n = usize::try_from(left).map_or(SCRATCH, |l| l.min(SCRATCH));
                recv_within(
                    sock,
                    Dst::Slice(&mut scratch[..n]),
                    &mut self.fds,
                    false,
                    deadline,
                    &mut self.pace,
                )?
            } else {
                // Not skipping: the whole body fits in a usize.
                let filled = self.body.len();
                if filled == self.body.capacity() && !self.make_room(1) {
                    self.body = Vec::new();
                    self.skipping = true;
                    continue;
                }
                // Never past the frame: the buffer may be larger than this body (see `body`).
                let max = MAX_CHUNK.min(self.body_len() - filled);
                recv_within(
                    sock,
                    Dst::Spare(&mut self.body, max),
                    &mut self.fds,
                    false,
                    deadline,
                    &mut self.pace,
                )?
            };
            self.fds_lost |= got.fds_lost;
            match got.len {
                0 => return Err(self.truncated()),
                n => {
                    self.offset += n as u64;
                    self.received += n as u64;
                }
            }
        }
    }

    /// The length of the part of the body that goes into `body` (not skipping).
    fn body_len(&self) -> usize {
        self.len as usize - self.prefix_len
    }

    /// The body length and the number of descriptors a whole header announces.
    fn header_fields(&self) -> (u64, usize) {
        proc_os::frame::parse_header(&self.header)
    }

    /// Starts a new frame at the next byte to serve.
    fn begin(&mut self) {
        if self.body.capacity() > KEEP {
            self.body = Vec::new();
        }
        // The allocation stays for the next body (see `body`).
        self.body.clear();
        self.len = 0;
        self.received = 0;
        self.frame_start = self.offset;
        self.probe = false;
        self.prefix_len = 0;
    }

    /// One receive of at most `max` bytes into the (empty) read-ahead buffer; returns the bytes
    /// received, 0 at the end of the stream. Descriptors that came along wait in `unclaimed` for
    /// their frame's header.
    fn fill(&mut self, sock: BorrowedFd<'_>, deadline: Option<Instant>, max: usize) -> Result<usize> {
        debug_assert_eq!(self.pos, self.end, "a read into the buffer while it holds bytes");
        if self.ahead.is_empty() {
            self.ahead = vec![0; READ_AHEAD].into_boxed_slice();
        }
        let mut fds = Vec::new();
        let got =
            recv_within(sock, Dst::Slice(&mut self.ahead[..max]), &mut fds, true, deadline, &mut self.pace)?;
        self.pos = 0;
        self.end = got.len;
        if !fds.is_empty() || got.fds_lost {
            let start = self.offset;
            self.unclaimed.push_back(Batch { start, end: start + got.len as u64, fds, lost: got.fds_lost });
        }
        Ok(got.len)
    }

    /// Marks `n` bytes of the read-ahead buffer as served.
    fn serve(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
    }

    /// Once the header is whole: takes the descriptors of the read that brought the frame's first
    /// byte, if they are this frame's (see the module docs for the rule).
    fn claim(&mut self) {
        let announced = self.header_fields().1;
        let header_end = self.frame_start + HEADER as u64;
        while let Some(batch) = self.unclaimed.front() {
            if batch.end <= self.frame_start {
                // No frame starting in that read claimed them: the sender broke the format.
                tracing::warn!(count = batch.fds.len(), "closing descriptors that came with no message");
                self.unclaimed.pop_front();
                continue;
            }
            let mine = batch.start <= self.frame_start && (announced > 0 || header_end > batch.end);
            if mine {
                if let Some(batch) = self.unclaimed.pop_front() {
                    self.fds.extend(batch.fds);
                    self.fds_lost |= batch.lost;
                }
            }
            return;
        }
    }

    /// Makes room in the body's capacity for the next `n` bytes (the frame holds them), writing
    /// nothing: at least 64 KiB, doubling, never past the frame, so memory grows only as fast as
    /// bytes come, whatever the header claims. False when there is no memory for it.
    fn make_room(&mut self, n: usize) -> bool {
        let filled = self.body.len();
        // The body never grows past the frame, whose length fits in a usize when not skipping.
        let total = self.body_len();
        while self.body.capacity() < filled + n {
            let capacity = self.body.capacity();
            // Doubling copies at most as many bytes as the body ends up with; allocating a
            // large body's length at once measured no faster.
            let want = FIRST_CHUNK.max(capacity.saturating_mul(2)).min(total);
            if self.body.try_reserve_exact(want - filled).is_err() {
                return false;
            }
        }
        true
    }

    /// Ends a whole frame.
    fn finish(&mut self) -> Result<()> {
        self.header_len = 0;
        self.large_last = self.len >= DIRECT as u64;
        if self.pos < self.end {
            // The peer is ahead of this reader: reading first will find something.
            self.pace.quiet = false;
        }
        let fds = std::mem::take(&mut self.fds);
        let announced = self.header_fields().1;
        let fds_lost = std::mem::take(&mut self.fds_lost) || fds.len() != announced;
        // Descriptors of reads served to the end that no frame claimed can be no later frame's
        // either (a frame claims only those of the read its header starts in): the sender broke
        // the format (descriptors with a header that announces none, or with a body). They are
        // closed now, not kept until the next header, and the frame they came with is refused.
        let mut stray = false;
        while self.unclaimed.front().is_some_and(|batch| batch.end <= self.offset) {
            if let Some(batch) = self.unclaimed.pop_front() {
                tracing::warn!(count = batch.fds.len(), "closing descriptors that came with no message");
                stray = true;
            }
        }
        if std::mem::take(&mut self.skipping) {
            return Err(Error::TooLarge(self.len));
        }
        debug_assert_eq!(self.body.len(), self.body_len(), "a whole body");
        if stray {
            return Err(Error::Os(io::Error::new(
                io::ErrorKind::InvalidData,
                "handles came with a message that did not announce them (the sender broke the format)",
            )));
        }
        if fds_lost {
            return Err(Error::Os(io::Error::new(
                io::ErrorKind::InvalidData,
                "the handles of a message were lost in transit (too many open files?)",
            )));
        }
        self.fds_ready = fds;
        Ok(())
    }

    /// The frame just finished, as a message.
    fn message(&mut self) -> Result<Message<'_>> {
        let fds = std::mem::take(&mut self.fds_ready);
        Ok(Message { prefix: &self.head[..self.prefix_len], body: &mut self.body, fds })
    }

    /// Drops a frame cut short by the end of the stream.
    fn truncated(&mut self) -> Error {
        self.header_len = 0;
        self.fds_ready.clear();
        self.fds.clear();
        self.fds_lost = false;
        self.skipping = false;
        self.unclaimed.clear();
        self.large_last = false;
        self.begin();
        Error::Truncated
    }
}

/// One receive into `buf`, waiting for data until `deadline`. A reset connection reads as the
/// end of the stream (Linux reports a peer that closed with unread data that way, once).
///
/// How it waits, cheapest first (a conversation, where each message answers the last, waits at
/// almost every receive):
///
/// - First it looks for bytes without sleeping, for up to [`LOOK`] (or until the deadline), yielding
///   the CPU between tries: a peer that answers at once is found awake, without the wake-up from
///   sleep that costs tens of microseconds on a busy or virtual machine.
/// - With no deadline, or one at least [`FAR`] away, the `recvmsg` itself blocks, one system call
///   and no timer. Timed receives bound it by setting the socket's receive timeout to [`SLICE`]
///   (every process sets the same value, so it is never longer than a receive expects); when the
///   slice passes with nothing read, the receive goes on with `poll` until its deadline.
/// - Closer to the deadline, it reads without blocking and then waits with `poll`, whose timer is
///   exact; after a receive that found nothing ([`Pace::quiet`]) it waits first and reads once.
///
/// After a receive that waited and timed out ([`Pace::idle`]) it does not look first: the peer is
/// idle, and a loop of short timed receives would otherwise spend each look's CPU.
fn recv_within(
    sock: BorrowedFd<'_>,
    buf: Dst<'_>,
    fds: &mut Vec<OwnedFd>,
    with_fds: bool,
    deadline: Option<Instant>,
    pace: &mut Pace,
) -> Result<proc_os::socket::Received> {
    // Only a receive that could wait says the peer is idle when it times out (a receive whose
    // deadline has passed only looks).
    let could_wait = deadline.is_none_or(|d| d > Instant::now());
    let got = wait_and_recv(sock, buf, fds, with_fds, deadline, pace);
    pace.idle = could_wait && matches!(got, Err(Error::Timeout));
    got
}

/// [`recv_within`]'s ways of waiting, in order.
fn wait_and_recv(
    sock: BorrowedFd<'_>,
    mut buf: Dst<'_>,
    fds: &mut Vec<OwnedFd>,
    with_fds: bool,
    deadline: Option<Instant>,
    pace: &mut Pace,
) -> Result<proc_os::socket::Received> {
    if !pace.idle {
        if let Some(got) = look_briefly(sock, &mut buf, fds, with_fds, deadline)? {
            return Ok(got);
        }
    }
    // A blocking read already ran out its slice in this call: the rest waits with `poll`.
    let mut sliced = false;
    loop {
        let far = deadline.is_none_or(|d| d.saturating_duration_since(Instant::now()) >= FAR);
        let got = if far && !sliced {
            if deadline.is_some() && !pace.slice_set {
                proc_os::socket::set_recv_timeout(sock, SLICE).map_err(Error::Os)?;
                pace.slice_set = true;
            }
            buf.recv(sock, fds, with_fds, false)
        } else if !pace.quiet {
            buf.recv(sock, fds, with_fds, true)
        } else {
            Ok(None)
        };
        match got {
            Ok(Some(got)) => return Ok(got),
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(proc_os::socket::Received { len: 0, fds_lost: false })
            }
            Err(e) => return Err(Error::Os(e)),
        }
        sliced |= far;
        pace.quiet = true;
        let ready = proc_os::fd::wait_readable(&[sock], deadline).map_err(Error::Os)?;
        if !ready.first().copied().unwrap_or(false) {
            return Err(Error::Timeout);
        }
        match buf.recv(sock, fds, with_fds, true) {
            Ok(Some(got)) => return Ok(got),
            // Another receiver (in another process) took it: wait again.
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok(proc_os::socket::Received { len: 0, fds_lost: false })
            }
            Err(e) => return Err(Error::Os(e)),
        }
    }
}

/// Whether `sock` becomes readable within [`LOOK`] (or by `deadline`, if sooner), looking without
/// sleeping, as a receive does before it sleeps: a peer that streams messages a little slower than
/// they are taken is waited for without a wake-up (tens of microseconds on a virtual machine). A
/// deadline that has passed looks once.
pub(super) fn look_readable(sock: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<bool> {
    let ready = look(deadline, || Ok(proc_os::fd::is_readable(sock).map_err(Error::Os)?.then_some(())))?;
    Ok(ready.is_some())
}

/// Looks for bytes without sleeping (see [`look`]). `None`: nothing came.
fn look_briefly(
    sock: BorrowedFd<'_>,
    buf: &mut Dst<'_>,
    fds: &mut Vec<OwnedFd>,
    with_fds: bool,
    deadline: Option<Instant>,
) -> Result<Option<proc_os::socket::Received>> {
    look(deadline, || match buf.recv(sock, fds, with_fds, true) {
        Ok(got) => Ok(got),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
            Ok(Some(proc_os::socket::Received { len: 0, fds_lost: false }))
        }
        Err(e) => Err(Error::Os(e)),
    })
}

/// Runs `attempt` until it gives something, for up to [`LOOK`] or until `deadline`, yielding the
/// CPU between tries (never sleeping). `None`: it gave nothing in that time.
fn look<R>(deadline: Option<Instant>, mut attempt: impl FnMut() -> Result<Option<R>>) -> Result<Option<R>> {
    let mut until = None;
    loop {
        if let Some(got) = attempt()? {
            return Ok(Some(got));
        }
        // The clock is read only once the first try found nothing.
        let now = Instant::now();
        let until = *until.get_or_insert_with(|| {
            let look = now.checked_add(LOOK).unwrap_or(now);
            deadline.map_or(look, |d| d.min(look))
        });
        if now >= until {
            return Ok(None);
        }
        std::thread::yield_now();
    }
}

/// Where one receive lands.
enum Dst<'a> {
    /// A buffer, overwritten from its start.
    Slice(&'a mut [u8]),
    /// The unused capacity of a body, at most this many bytes; the body grows by what came.
    /// Never with descriptors (a body's bytes carry none).
    Spare(&'a mut Vec<u8>, usize),
}

impl Dst<'_> {
    /// One `recvmsg` (see [`proc_os::socket::recv`]).
    fn recv(
        &mut self,
        sock: BorrowedFd<'_>,
        fds: &mut Vec<OwnedFd>,
        with_fds: bool,
        dontwait: bool,
    ) -> io::Result<Option<proc_os::socket::Received>> {
        match self {
            Dst::Slice(buf) => proc_os::socket::recv(sock, buf, fds, with_fds, dontwait),
            Dst::Spare(body, max) => {
                debug_assert!(!with_fds, "a body's bytes carry no descriptors");
                proc_os::socket::recv_spare(sock, body, *max, dontwait)
            }
        }
    }
}

/// How receives on a connection have gone, to pick the cheapest way to wait for the next one.
#[derive(Debug, Default)]
struct Pace {
    /// The last receive found nothing to read, and no message has been read ahead since: the peer
    /// answers rather than streams, so a read without blocking would find nothing.
    quiet: bool,
    /// This process has set the socket's receive timeout to [`SLICE`].
    slice_set: bool,
    /// The last receive timed out: the peer is idle, so the next one waits without looking first.
    idle: bool,
}

#[cfg(test)]
mod test;
