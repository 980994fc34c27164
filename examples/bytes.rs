//! Binary payloads: `ByteBuf` through a `Queue` and a `Pipe`.
//!
//! A worker gets "frames" of raw bytes from a queue and sends back each frame's checksum, and the
//! last frame inverted, through a pipe. `ByteBuf` travels as bytes (one copy); a bare `Vec<u8>`
//! would be serialized element by element (see `multiproc::process` docs, "Bytes").
//!
//! Run it with `cargo run --release --example bytes`.

use multiproc::{pipe, ByteBuf, Connection, Process, Queue};

/// One result: the frame's number, the sum of its bytes, and (for the last frame) its inverse.
type Reply = (u32, u64, Option<ByteBuf>);

fn worker(frames: Queue<Option<(u32, ByteBuf)>>, replies: Connection<Reply>, last: u32) {
    while let Ok(Some((n, frame))) = frames.get() {
        let sum = frame.iter().map(|&b| u64::from(b)).sum();
        let inverse = (n == last).then(|| ByteBuf::from(frame.iter().map(|b| !b).collect::<Vec<u8>>()));
        if replies.send(&(n, sum, inverse)).is_err() {
            return;
        }
    }
}

fn main() -> multiproc::Result<()> {
    const FRAMES: u32 = 8;
    const SIZE: usize = 1 << 20;
    let frames = Queue::new(2)?;
    let (replies, their_replies) = pipe()?;
    let p = Process::new(worker, (frames.clone(), their_replies, FRAMES - 1)).start()?;
    for n in 0..FRAMES {
        let frame: Vec<u8> = (0..SIZE).map(|i| (i as u32).wrapping_mul(n + 1) as u8).collect();
        frames.put(Some((n, ByteBuf::from(frame))))?;
    }
    frames.put(None)?;
    let mut total = 0u64;
    for _ in 0..FRAMES {
        let (n, sum, inverse) = replies.recv()?;
        total += sum;
        if let Some(inverse) = inverse {
            println!("frame {n}: {} bytes back, first byte {:#04x}", inverse.len(), inverse[0]);
        }
    }
    p.join()?;
    println!("{FRAMES} frames of {} KiB, checksum {total}", SIZE >> 10);
    Ok(())
}
