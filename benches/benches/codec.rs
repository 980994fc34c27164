//! The message codec next to postcard alone: encoding and decoding a small struct, to check that
//! keeping the cause of a serialization error costs nothing when there is none.
//!
//! Group `codec_small_struct`: `postcard_to_vec` / `codec_to_vec`, `postcard_to_slice` /
//! `codec_to_slice`, `postcard_from_bytes` / `codec_from_bytes`, each pair on the same value in the
//! same run (`proc_core::codec` is postcard behind an adapter whose error keeps the message).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use multiproc::process::codec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Small {
    id: u64,
    flag: bool,
    name: String,
    scores: Vec<u32>,
    kind: Kind,
    parent: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Leaf,
    Node { depth: u16, weight: f64 },
}

fn small() -> Small {
    Small {
        id: 123_456_789,
        flag: true,
        name: "a small struct".into(),
        scores: vec![1, 300, 70_000, 5],
        kind: Kind::Node { depth: 3, weight: 0.5 },
        parent: Some(42),
    }
}

fn small_struct(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec_small_struct");
    group.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_millis(1500));
    let value = small();
    let bytes = codec::to_vec(&value).expect("encodes");
    assert_eq!(bytes, postcard::to_stdvec(&value).expect("encodes"));
    let mut buf = [0u8; 128];

    group.bench_function("postcard_to_vec", |b| b.iter(|| postcard::to_stdvec(black_box(&value))));
    group.bench_function("codec_to_vec", |b| b.iter(|| codec::to_vec(black_box(&value))));
    group.bench_function("postcard_to_slice", |b| {
        b.iter(|| postcard::to_slice(black_box(&value), &mut buf).map(|w| w.len()))
    });
    group.bench_function("codec_to_slice", |b| {
        b.iter(|| codec::to_slice(black_box(&value), &mut buf).map(|w| w.len()))
    });
    group.bench_function("postcard_from_bytes", |b| {
        b.iter(|| postcard::from_bytes::<Small>(black_box(&bytes)))
    });
    group.bench_function("codec_from_bytes", |b| b.iter(|| codec::from_bytes::<Small>(black_box(&bytes))));
    group.finish();
}

criterion_group!(benches, small_struct);
criterion_main!(benches);
