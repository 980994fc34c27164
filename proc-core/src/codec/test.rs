//! Unit tests of the codec: postcard's bytes, and messages that survive.

use std::collections::BTreeMap;

use serde::de::{Deserializer, Error as _};
use serde::ser::{Error as _, Serializer};
use serde::{Deserialize, Serialize};

use super::{from_bytes, serialized_size, take_from_bytes, to_extend, to_slice, to_vec};

const REFUSAL: &str = "FailsToEncode refuses to serialize";
const DECODE_REFUSAL: &str = "FailsToDecode refuses to deserialize";

struct FailsToEncode;

impl Serialize for FailsToEncode {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom(REFUSAL))
    }
}

#[derive(Debug, Serialize)]
struct FailsToDecode(u8);

impl<'de> Deserialize<'de> for FailsToDecode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let _ = u8::deserialize(d)?;
        Err(D::Error::custom(DECODE_REFUSAL))
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Newtype(u32),
    Tuple(i8, String),
    Struct { a: Option<u16>, b: Vec<u8> },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Sample {
    flag: bool,
    small: i16,
    big: u128,
    neg: i128,
    float: f64,
    c: char,
    text: String,
    #[serde(with = "serde_bytes_like")]
    raw: Vec<u8>,
    shapes: Vec<Shape>,
    map: BTreeMap<String, (u8, Option<()>)>,
    unit: (),
}

/// Serializes a byte vector as bytes (not as a sequence), to cover `serialize_bytes`.
mod serde_bytes_like {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        serde::Deserialize::deserialize(d)
    }
}

fn sample() -> Sample {
    Sample {
        flag: true,
        small: -300,
        big: u128::MAX - 7,
        neg: i128::MIN + 3,
        float: 2.5,
        c: 'ß',
        text: "hello".into(),
        raw: vec![1, 2, 3],
        shapes: vec![
            Shape::Unit,
            Shape::Newtype(70_000),
            Shape::Tuple(-1, "x".into()),
            Shape::Struct { a: Some(9), b: vec![4, 5] },
            Shape::Struct { a: None, b: Vec::new() },
        ],
        map: [("k".to_owned(), (1, Some(()))), ("l".to_owned(), (2, None))].into_iter().collect(),
        unit: (),
    }
}

#[test]
fn bytes_are_postcards_and_read_back() {
    let value = sample();
    let bytes = to_vec(&value).unwrap();
    assert_eq!(bytes, postcard::to_stdvec(&value).unwrap());
    assert_eq!(serialized_size(&value).unwrap(), bytes.len());
    assert_eq!(to_extend(&value, vec![0xAA]).unwrap()[1..], bytes[..]);
    let mut buf = [0u8; 256];
    assert_eq!(to_slice(&value, &mut buf).unwrap(), &bytes[..]);
    assert_eq!(from_bytes::<Sample>(&bytes).unwrap(), value);
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[7, 8]);
    let (back, rest) = take_from_bytes::<Sample>(&longer).unwrap();
    assert_eq!((back, rest), (value, &[7u8, 8][..]));
    // Borrowed strings and bytes come straight from the input.
    let borrowed = to_vec(&("borrowed", &b"bytes"[..])).unwrap();
    let (s, b): (&str, &[u8]) = from_bytes(&borrowed).unwrap();
    assert_eq!((s, b), ("borrowed", &b"bytes"[..]));
}

#[test]
fn a_refusal_to_serialize_keeps_its_message_wherever_it_sits() {
    fn check<T: Serialize>(value: &T) {
        let e = to_vec(value).unwrap_err();
        assert_eq!(e.to_string(), REFUSAL);
        assert_eq!(e.custom_message(), Some(REFUSAL));
        assert_eq!(serialized_size(value).unwrap_err().to_string(), REFUSAL);
        assert_eq!(to_extend(value, Vec::new()).unwrap_err().to_string(), REFUSAL);
        assert_eq!(to_slice(value, &mut [0u8; 64]).unwrap_err().to_string(), REFUSAL);
    }
    #[derive(Serialize)]
    struct InStruct {
        a: u8,
        b: FailsToEncode,
    }
    #[derive(Serialize)]
    enum InEnum {
        Newtype(FailsToEncode),
        Tuple(u8, FailsToEncode),
        Struct { a: FailsToEncode },
    }
    check(&FailsToEncode);
    check(&(1u8, FailsToEncode));
    check(&vec![FailsToEncode]);
    check(&Some(FailsToEncode));
    check(&InStruct { a: 1, b: FailsToEncode });
    check(&InEnum::Newtype(FailsToEncode));
    check(&InEnum::Tuple(1, FailsToEncode));
    check(&InEnum::Struct { a: FailsToEncode });
    check(&[(1u8, FailsToEncode)].into_iter().collect::<BTreeMap<_, _>>());
    check(&[(0u8, vec![Some((2u8, FailsToEncode))])]);
}

#[test]
fn a_refusal_to_deserialize_keeps_its_message_wherever_it_sits() {
    fn check<'a, T: Deserialize<'a> + std::fmt::Debug>(bytes: &'a [u8]) {
        let e = from_bytes::<T>(bytes).unwrap_err();
        assert_eq!(e.to_string(), DECODE_REFUSAL);
        assert_eq!(e.custom_message(), Some(DECODE_REFUSAL));
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct InStruct {
        a: u8,
        b: FailsToDecode,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum InEnum {
        Newtype(FailsToDecode),
        Tuple(u8, FailsToDecode),
        Struct { a: FailsToDecode },
    }
    check::<FailsToDecode>(&to_vec(&FailsToDecode(1)).unwrap());
    check::<(u8, FailsToDecode)>(&to_vec(&(1u8, FailsToDecode(1))).unwrap());
    check::<Vec<FailsToDecode>>(&to_vec(&vec![FailsToDecode(1)]).unwrap());
    check::<Option<FailsToDecode>>(&to_vec(&Some(FailsToDecode(1))).unwrap());
    check::<InStruct>(&to_vec(&(1u8, FailsToDecode(1))).unwrap());
    check::<InEnum>(&to_vec(&(0u32, FailsToDecode(1))).unwrap());
    check::<InEnum>(&to_vec(&(1u32, 1u8, FailsToDecode(1))).unwrap());
    check::<InEnum>(&to_vec(&(2u32, FailsToDecode(1))).unwrap());
    check::<BTreeMap<u8, FailsToDecode>>(&to_vec(&vec![(1u8, FailsToDecode(1))]).unwrap());
    check::<BTreeMap<FailsToDecode, u8>>(&to_vec(&vec![(FailsToDecode(1), 1u8)]).unwrap());
}

impl PartialEq for FailsToDecode {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for FailsToDecode {}
impl PartialOrd for FailsToDecode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for FailsToDecode {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

#[test]
fn a_visitors_own_errors_keep_their_messages() {
    // An unknown variant index, found by serde's derived visitor, not by postcard.
    let e = from_bytes::<Shape>(&to_vec(&9u32).unwrap()).unwrap_err();
    assert!(e.to_string().contains("variant index 0 <= i < 4"), "{e}");
    // A value out of range for the type, found by the type's visitor.
    let e = from_bytes::<std::num::NonZeroU32>(&to_vec(&0u32).unwrap()).unwrap_err();
    assert!(e.custom_message().is_some_and(|m| m.contains("zero")), "{e}");
}

#[test]
fn postcards_own_errors_pass_through() {
    let bytes = to_vec(&sample()).unwrap();
    let e = from_bytes::<Sample>(&bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(e.custom_message(), None);
    assert_eq!(e.to_string(), postcard::Error::DeserializeUnexpectedEnd.to_string());
    let e = to_slice(&sample(), &mut [0u8; 4]).unwrap_err();
    assert_eq!(e.to_string(), postcard::Error::SerializeBufferFull.to_string());
    // A refusal swallowed on the way (its message set aside) is not reported for a later error.
    struct Swallows;
    impl Serialize for Swallows {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            assert!(to_vec(&vec![FailsToEncode]).is_err());
            s.serialize_u8(1)
        }
    }
    assert_eq!(to_vec(&Swallows).unwrap(), [1]);
    let e = from_bytes::<bool>(&[7]).unwrap_err();
    assert_eq!(e.custom_message(), None, "{e}");
}

#[test]
fn nested_codec_calls_keep_their_own_messages() {
    struct Nested;
    impl Serialize for Nested {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let inner = to_vec(&(1u8, FailsToEncode)).map_err(|e| S::Error::custom(format!("inner: {e}")))?;
            s.serialize_bytes(&inner)
        }
    }
    let e = to_vec(&vec![Nested]).unwrap_err();
    assert_eq!(e.to_string(), format!("inner: {REFUSAL}"));
}

#[test]
fn a_value_that_wraps_a_nested_error_keeps_the_nested_message() {
    #[derive(Debug)]
    struct Wraps;
    impl<'de> Deserialize<'de> for Wraps {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let _ = FailsToDecode::deserialize(d).map_err(|e| D::Error::custom(format!("in Wraps: {e}")))?;
            Ok(Wraps)
        }
    }
    let e = from_bytes::<(u8, Wraps)>(&[1, 0]).unwrap_err();
    assert_eq!(e.to_string(), format!("in Wraps: {DECODE_REFUSAL}"));
}
