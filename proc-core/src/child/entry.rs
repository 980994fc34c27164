//! Entry points: where a function lives in the binary, as plain data that a child of the same
//! binary resolves back to the function, checked by a fingerprint of its code.
//!
//! A leaf of the crate: `handle` builds `StaticFn` and `CodeAddr` on it, and the start methods send
//! one to a re-executed child, without this module needing either.

use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

/// Where a target lives in the binary: its offset from an anchor function, which ASLR cannot
/// change within one binary, and a fingerprint of its first code bytes that the child checks
/// before jumping there.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct EntryPoint {
    offset: i64,
    fingerprint: u64,
}

/// A monomorphized trampoline: deserializes the arguments, runs the target, serializes the result.
/// See `target::trampoline`.
pub(crate) type EntryFn = fn(Vec<u8>, Vec<OwnedFd>) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), String>;

impl EntryPoint {
    pub(crate) fn of(entry: EntryFn) -> Self {
        Self::of_addr(entry as usize)
    }

    pub(crate) fn of_addr(addr: usize) -> Self {
        EntryPoint { offset: (addr as i64).wrapping_sub(anchor() as i64), fingerprint: fingerprint(addr) }
    }

    /// The offset and the fingerprint.
    pub(crate) fn parts(self) -> (i64, u64) {
        (self.offset, self.fingerprint)
    }

    /// The entry point with these parts.
    pub(crate) fn from_parts(offset: i64, fingerprint: u64) -> Self {
        EntryPoint { offset, fingerprint }
    }

    /// The address in this process, once the code there is checked to be the same.
    ///
    /// The offset comes from bytes another process wrote, so the address is checked to lie in this
    /// binary's loaded image before its code is read: a garbled offset is an error, not a fault.
    pub(crate) fn resolve_addr(self) -> std::result::Result<usize, String> {
        let addr = (anchor() as i64).wrapping_add(self.offset) as usize;
        if !crate::sys::in_image_of(addr, anchor()) {
            return Err("the target's address lies outside this binary's code (a different binary, or \
                        garbled bytes)"
                .into());
        }
        if fingerprint(addr) != self.fingerprint {
            return Err(
                "the child runs a different binary than its parent (target fingerprint mismatch)".into()
            );
        }
        Ok(addr)
    }

    /// The trampoline in this process, once the code there is checked to be the same.
    pub(crate) fn resolve(self) -> std::result::Result<EntryFn, String> {
        let addr = self.resolve_addr()?;
        // SAFETY: the parent computed the offset from a fn pointer of type EntryFn in the same
        // binary (the fingerprint of the code there matches), so `addr` is that function.
        Ok(unsafe { std::mem::transmute::<usize, EntryFn>(addr) })
    }
}

/// Computes, once, what checking an entry point needs in every process (the anchor's fingerprint,
/// the segments of its image), so that the fork server's children inherit it instead of each
/// computing it.
pub(crate) fn warm_up() {
    let _ = fingerprint(anchor());
    let _ = crate::sys::in_image_of(anchor(), anchor());
}

/// Fingerprints code: the bytes from `addr` to the end of its 4 KiB block, and the whole 4 KiB
/// block of the anchor (cached). `addr` is a function of this binary, or an address checked with
/// `sys::in_image_of` (the block then lies in a mapped, readable segment). Within one binary both are identical in every process; a
/// different binary at the same path (macOS re-executes the path, which may have been rebuilt)
/// almost surely differs in at least one of them.
pub(crate) fn fingerprint(addr: usize) -> u64 {
    static ANCHOR_BLOCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let anchor_block = *ANCHOR_BLOCK.get_or_init(|| {
        let start = anchor() & !(BLOCK - 1);
        hash_code(start, BLOCK)
    });
    let end = (addr & !(BLOCK - 1)) + BLOCK;
    hash_code(addr, end - addr) ^ anchor_block.rotate_left(17)
}

const BLOCK: usize = 4096;

/// The function that offsets count from: any function of proc-core serves, as long as parent and
/// child agree, and this one is always linked in.
fn anchor() -> usize {
    fingerprint as fn(usize) -> u64 as usize
}

fn hash_code(start: usize, len: usize) -> u64 {
    // SAFETY: `start..start + len` lies within one 4 KiB block that holds code of this binary (a
    // function's first byte, the anchor function's block, or an address `resolve_addr` checked to
    // lie in this binary's loaded segments). Code is mapped readable on Linux and
    // macOS, and mappings are whole pages of at least 4 KiB, so the block is mapped.
    let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, len) };
    // FNV-1a over 8-byte words: cheap, and good enough to tell different code apart.
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
