//! The chunk a producer process writes its large messages into: the process-local state that
//! holds it (`Writer`, kept in ring 0's handle), and the serializer flavor that writes a message
//! into it, around the caches when no consumer will read it soon. The protocol around chunks
//! (reserving room, the free list, counting messages read) is in `spill`.

use std::sync::Arc;

use proc_core::shm::SharedMemory;

/// How far ahead of its writes a producer maps its chunk's pages.
const POPULATE_STEP: usize = 1 << 20;

/// This process' chunk (in ring 0 of a queue), and the size of the next one it creates.
#[derive(Default)]
pub(super) struct Writer {
    pub(super) held: Option<Held>,
    pub(super) next_size: usize,
}

pub(super) struct Held {
    /// The process that holds it: a copy of this state inherited through fork is not the child's.
    pub(super) pid: u32,
    /// Its free-list entry (`HELD | pid`).
    pub(super) entry: usize,
    pub(super) shm: Arc<SharedMemory>,
    /// Where the next message goes, from `C_DATA`.
    pub(super) offset: usize,
    /// How many bytes from the chunk's start this process has mapped ahead (see `populate`).
    pub(super) populated: usize,
}

impl Held {
    /// Maps the chunk's pages up to `end` (and up to [`POPULATE_STEP`] beyond) in one system
    /// call before they are written: a write to a page of a shared mapping not yet mapped in
    /// this process faults, page by page, which costs more than the copy itself (a chunk taken
    /// over from another process, or one this process has just mapped).
    pub(super) fn populate(&mut self, end: usize) {
        if end <= self.populated {
            return;
        }
        let from = self.populated;
        let to = end.max(from + POPULATE_STEP).next_multiple_of(4096).min(self.shm.size());
        // SAFETY: `from` is a multiple of 4096 (it starts at 0 and only takes such values, or the
        // chunk's size, itself one), so page-aligned in the page-aligned mapping; `to` does not
        // pass the mapping's end.
        unsafe { proc_os::populate_write(self.shm.as_ptr().add(from), to - from) };
        self.populated = to;
    }
}

/// postcard's output into a reserved place of a chunk: [`postcard::to_slice`]'s, except that with
/// `stream` long runs of bytes (a byte string's contents) go around the caches.
pub(super) struct ChunkWriter<'a> {
    pub(super) buf: &'a mut [u8],
    pub(super) at: usize,
    pub(super) stream: bool,
}

/// Runs at least this long are streamed.
const STREAM_MIN: usize = 4096;

impl postcard::ser_flavors::Flavor for ChunkWriter<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        let slot = self.buf.get_mut(self.at).ok_or(postcard::Error::SerializeBufferFull)?;
        *slot = byte;
        self.at += 1;
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.at.checked_add(data.len()).ok_or(postcard::Error::SerializeBufferFull)?;
        let dst = self.buf.get_mut(self.at..end).ok_or(postcard::Error::SerializeBufferFull)?;
        if self.stream && data.len() >= STREAM_MIN {
            stream_copy(dst, data);
        } else {
            dst.copy_from_slice(data);
        }
        self.at = end;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Copies `src` into `dst` (of the same length) with non-temporal stores where the CPU has them
/// (x86_64's SSE2 `movntdq`), and fences them: the commit that publishes the message is ordered
/// after them. Elsewhere an ordinary copy.
fn stream_copy(dst: &mut [u8], src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        // Up to the first 16-byte boundary of `dst`, and the tail, ordinarily.
        let head = dst.as_ptr().align_offset(16).min(dst.len());
        dst[..head].copy_from_slice(&src[..head]);
        let body = (dst.len() - head) / 64 * 64;
        let mut i = head;
        while i < head + body {
            for lane in 0..4 {
                let at = i + lane * 16;
                // SAFETY: `at + 16 <= head + body <= src.len()`; an unaligned load of 16 bytes.
                let v = unsafe { _mm_loadu_si128(src.as_ptr().add(at).cast::<__m128i>()) };
                // SAFETY: `at + 16 <= dst.len()`, and `dst + at` is 16-byte aligned (`head` aligns
                // it, and `at - head` is a multiple of 16); `dst` is borrowed exclusively.
                unsafe { _mm_stream_si128(dst.as_mut_ptr().add(at).cast::<__m128i>(), v) };
            }
            i += 64;
        }
        dst[i..].copy_from_slice(&src[i..]);
        // SAFETY: a store fence has no precondition (SSE is part of x86_64).
        unsafe { _mm_sfence() };
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::Serialize;

    use super::*;

    #[test]
    fn a_streamed_copy_is_an_exact_copy_at_any_alignment() {
        let src: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in [0usize, 1, 15, 16, 17, 63] {
            for len in [0usize, 1, 15, 64, 4095, 4096, 4097, 10_000, 19_000] {
                let mut dst = vec![0u8; start + len + 1];
                stream_copy(&mut dst[start..start + len], &src[..len]);
                assert_eq!(&dst[start..start + len], &src[..len], "start {start} len {len}");
                assert!(
                    dst[..start].iter().all(|&b| b == 0) && dst[start + len] == 0,
                    "start {start} len {len}"
                );
            }
        }
    }

    #[test]
    fn the_chunk_writer_writes_what_postcard_writes() {
        #[derive(Serialize)]
        struct Value<'a> {
            tag: u32,
            #[serde(with = "serde_bytes_like")]
            bytes: &'a [u8],
            text: String,
        }
        mod serde_bytes_like {
            pub(super) fn serialize<S: serde::Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(b)
            }
        }
        let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let value = Value { tag: 7, bytes: &bytes, text: "spilled".into() };
        let want = postcard::to_allocvec(&value).unwrap();
        for stream in [false, true] {
            let mut buf = vec![0u8; want.len() + 3];
            postcard::serialize_with_flavor(&value, ChunkWriter { buf: &mut buf[3..], at: 0, stream })
                .unwrap();
            assert_eq!(&buf[3..], &want[..], "stream {stream}");
            let mut short = vec![0u8; want.len() - 1];
            assert!(postcard::serialize_with_flavor(&value, ChunkWriter { buf: &mut short, at: 0, stream })
                .is_err());
        }
    }
}
