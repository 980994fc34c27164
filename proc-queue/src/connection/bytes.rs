//! Messages that are one large byte string (a `ByteBuf`, a `String`, a `#[serde(transparent)]`
//! wrapper of one) come in without a copy of their bytes (issue 18, item 1).
//!
//! Postcard encodes such a value as the string's length (a varint) and its bytes. The frame
//! reader, asked for a typed message, reads a large body whose first bytes are a varint equal to
//! the length of the rest into a buffer of its own, at offset 0 (see
//! `frame::Incoming::read_typed`). [`try_take`] then offers that buffer to the value's
//! `Deserialize` through [`TopDe`]: a byte or text string takes it as it is
//! (`visit_byte_buf`/`visit_string`); any other value is refused at its first call, before it
//! reads anything, and is decoded the usual way from the whole body. The wire format is unchanged.
//!
//! Sending keeps its one copy (the value serialized into the thread's buffer): a serializer that
//! took only top-level strings would have to run a value's `Serialize` a second time for every
//! other value, and a `Serialize` may act before its first call (a manager proxy exports itself).

use std::fmt;

use serde::de::{self, Visitor};

/// Why a fast path did not take a value.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Not a top-level string: use the usual path (nothing was sent or consumed).
    Other,
    /// The value's own `Deserialize` failed with this message.
    Custom(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Other => f.write_str("not a byte string"),
            Refused::Custom(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Refused {}

impl de::Error for Refused {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Refused::Custom(msg.to_string())
    }
}

/// A byte string at least this long goes the fast way (below it, one copy costs less than the
/// probing).
pub(crate) const FAST: usize = 16 << 10;

/// The varint postcard writes for a length: 7 bits a byte, low first (for the tests, which check
/// [`read_varint`] against it).
#[cfg(test)]
fn varint(mut n: u64) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let mut i = 0;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out[i] = byte;
            return (out, i + 1);
        }
        out[i] = byte | 0x80;
        i += 1;
    }
}

/// The length a body's leading varint gives and the varint's size, if `head` starts with a whole
/// canonical varint (at most 10 bytes).
pub(crate) fn read_varint(head: &[u8]) -> Option<(u64, usize)> {
    let mut n: u64 = 0;
    for (i, &b) in head.iter().take(10).enumerate() {
        let bits = u64::from(b & 0x7f);
        n |= bits.checked_shl(7 * i as u32).filter(|v| v >> (7 * i as u32) == bits)?;
        if b & 0x80 == 0 {
            // Canonical only: postcard writes no trailing zero groups.
            return (i == 0 || b != 0).then_some((n, i + 1));
        }
    }
    None
}

/// Offers `payload` (a body's bytes after its leading varint) to `T`'s `Deserialize`: a
/// top-level byte or text string takes it. `Err((Refused::Other, Some(payload)))`: not taken, decode
/// the usual way; an error without the payload is the value's own failure on it.
pub(crate) fn try_take<T: de::DeserializeOwned>(payload: Vec<u8>) -> Result<T, (Refused, Option<Vec<u8>>)> {
    let mut slot = Some(payload);
    match T::deserialize(TopDe { payload: &mut slot }) {
        Ok(v) => Ok(v),
        Err(e) => Err((e, slot)),
    }
}

/// Hands a top-level byte or text string its bytes; refuses anything else at once.
struct TopDe<'a> {
    payload: &'a mut Option<Vec<u8>>,
}

macro_rules! refuse_de {
    ($($name:ident),* $(,)?) => {
        $(fn $name<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Refused> {
            Err(Refused::Other)
        })*
    };
}

impl<'de> de::Deserializer<'de> for TopDe<'_> {
    type Error = Refused;

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self.payload.take() {
            Some(bytes) => visitor.visit_byte_buf(bytes),
            None => Err(Refused::Other),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Refused> {
        let Some(bytes) = self.payload.take() else { return Err(Refused::Other) };
        match String::from_utf8(bytes) {
            Ok(s) => visitor.visit_string(s),
            Err(e) => {
                // Not text: the usual decoder reports it.
                *self.payload = Some(e.into_bytes());
                Err(Refused::Other)
            }
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Refused> {
        visitor.visit_newtype_struct(self)
    }

    refuse_de! {
        deserialize_any, deserialize_bool, deserialize_i8, deserialize_i16, deserialize_i32, deserialize_i64,
        deserialize_i128, deserialize_u8, deserialize_u16, deserialize_u32, deserialize_u64, deserialize_u128,
        deserialize_f32, deserialize_f64, deserialize_char, deserialize_option, deserialize_unit,
        deserialize_seq, deserialize_map, deserialize_identifier, deserialize_ignored_any,
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> Result<V::Value, Refused> {
        Err(Refused::Other)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Refused> {
        Err(Refused::Other)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused::Other)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused::Other)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused::Other)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn varints_round_trip_as_postcard_writes_them() {
        for n in [0u64, 1, 127, 128, 300, 16 << 10, 4 << 20, u32::MAX as u64, u64::MAX] {
            let (bytes, len) = varint(n);
            assert_eq!(read_varint(&bytes[..len]), Some((n, len)), "{n}");
            let postcard = proc_core::codec::to_vec(&n).unwrap_or_default();
            assert_eq!(&bytes[..len], &postcard[..], "{n}");
        }
        assert_eq!(read_varint(&[0x80]), None, "cut short");
        assert_eq!(read_varint(&[0x80, 0x00]), None, "not canonical");
        assert_eq!(read_varint(&[0xff; 11]), None, "too long");
    }

    #[test]
    fn only_top_level_strings_are_taken() {
        let big = vec![7u8; FAST];
        let taken: proc_core::ByteBuf = try_take(big.clone()).unwrap_or_default();
        assert_eq!(taken.len(), FAST);
        let text: String = try_take(b"text".to_vec()).unwrap_or_default();
        assert_eq!(text, "text");
        let Err((Refused::Other, Some(back))) = try_take::<String>(vec![0xff, 0xfe]) else {
            panic!("not text")
        };
        assert_eq!(back, [0xff, 0xfe]);
        let Err((Refused::Other, Some(_))) = try_take::<Vec<u8>>(big) else { panic!("a sequence") };
        let Err((Refused::Other, Some(_))) = try_take::<(u8, u8)>(vec![1, 2]) else { panic!("a tuple") };
    }
}
