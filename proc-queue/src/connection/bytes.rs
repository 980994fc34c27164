//! Messages that are one large byte string (a `ByteBuf`, a `String`, a `#[serde(transparent)]`
//! wrapper of one) go out and come in without a copy of their bytes (issue 18, item 1).
//!
//! Postcard encodes such a value as the string's length (a varint) and its bytes, so:
//!
//! - Sending: [`try_send`] serializes the value with [`TopSer`], which takes only a top-level byte
//!   or text string and sends the frame from where the bytes lie (the varint, then the caller's
//!   bytes); any other value is refused at its first call, before anything is sent or a handle
//!   exported, and goes the usual way (serialized into a buffer, then sent).
//! - Receiving: the frame reader, asked for a typed message, reads a large body whose first bytes
//!   are a varint equal to the length of the rest into a buffer of its own, at offset 0 (see
//!   `frame::Incoming::read_typed`). [`try_take`] then offers that buffer to the value's
//!   `Deserialize` through [`TopDe`]: a byte or text string takes it as it is
//!   (`visit_byte_buf`/`visit_string`); any other value is refused at its first call and is
//!   decoded the usual way from the whole body.
//!
//! Either way the wire format is unchanged: a receiver cannot tell how a frame was sent.

use std::fmt;

use serde::de::{self, Visitor};
use serde::ser::{self, Impossible, Serialize};

use crate::error::Error;

/// Why a fast path did not take a value.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Not a top-level string: use the usual path (nothing was sent or consumed).
    Other,
    /// The value's own `Serialize` or `Deserialize` failed with this message.
    Custom(String),
    /// Sending failed: the error to return (the usual path would fail the same way).
    Failed(Error),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Other => f.write_str("not a byte string"),
            Refused::Custom(m) => f.write_str(m),
            Refused::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Refused {}

impl ser::Error for Refused {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Refused::Custom(msg.to_string())
    }
}

impl de::Error for Refused {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Refused::Custom(msg.to_string())
    }
}

/// Sends one frame: the prefix, then the payload.
pub(crate) type SendParts<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), Error> + 'a;

/// A byte string at least this long goes the fast way (below it, one copy costs less than the
/// extra system call and the probing).
pub(crate) const FAST: usize = 16 << 10;

/// Sends `value` through `send(prefix, bytes)` if it is one byte or text string of at least
/// [`FAST`] bytes. `Err(Refused::Other)` (or `Custom`): nothing was sent, send it the usual way.
pub(crate) fn try_send<T: Serialize + ?Sized>(value: &T, send: &mut SendParts<'_>) -> Result<(), Refused> {
    value.serialize(TopSer { send })
}

/// The varint postcard writes for a length: 7 bits a byte, low first.
pub(crate) fn varint(mut n: u64) -> ([u8; 10], usize) {
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

/// Takes a top-level byte or text string and sends it; refuses anything else at once.
struct TopSer<'a> {
    send: &'a mut SendParts<'a>,
}

impl TopSer<'_> {
    fn string(self, bytes: &[u8]) -> Result<(), Refused> {
        if bytes.len() < FAST {
            return Err(Refused::Other);
        }
        let (prefix, n) = varint(bytes.len() as u64);
        (self.send)(&prefix[..n], bytes).map_err(Refused::Failed)
    }
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<(), Refused> {
            Err(Refused::Other)
        })*
    };
}

impl ser::Serializer for TopSer<'_> {
    type Ok = ();
    type Error = Refused;
    type SerializeSeq = Impossible<(), Refused>;
    type SerializeTuple = Impossible<(), Refused>;
    type SerializeTupleStruct = Impossible<(), Refused>;
    type SerializeTupleVariant = Impossible<(), Refused>;
    type SerializeMap = Impossible<(), Refused>;
    type SerializeStruct = Impossible<(), Refused>;
    type SerializeStructVariant = Impossible<(), Refused>;

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Refused> {
        self.string(v)
    }

    fn serialize_str(self, v: &str) -> Result<(), Refused> {
        self.string(v.as_bytes())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Refused> {
        // Postcard writes a newtype struct as its field.
        value.serialize(self)
    }

    refuse! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_i128(i128), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64),
        serialize_u128(u128), serialize_f32(f32), serialize_f64(f64), serialize_char(char),
        serialize_none(), serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Refused> {
        Err(Refused::Other)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Refused> {
        Err(Refused::Other)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Refused> {
        Err(Refused::Other)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Refused> {
        Err(Refused::Other)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Refused> {
        Err(Refused::Other)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Refused> {
        Err(Refused::Other)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Refused> {
        Err(Refused::Other)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Refused> {
        Err(Refused::Other)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Refused> {
        Err(Refused::Other)
    }

    fn is_human_readable(&self) -> bool {
        // As postcard's serializer.
        false
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
        let mut sent = Vec::new();
        let mut send = |prefix: &[u8], bytes: &[u8]| {
            sent.push((prefix.to_vec(), bytes.len()));
            Ok(())
        };
        assert!(try_send(&proc_core::ByteBuf::from(big.clone()), &mut send).is_ok());
        assert!(try_send(&"x".repeat(FAST), &mut send).is_ok());
        assert!(matches!(try_send(&proc_core::ByteBuf::from(vec![1u8; 10]), &mut send), Err(Refused::Other)));
        assert!(matches!(
            try_send(&(1u8, proc_core::ByteBuf::from(big.clone())), &mut send),
            Err(Refused::Other)
        ));
        assert!(matches!(try_send(&big, &mut send), Err(Refused::Other)), "a Vec<u8> is a sequence");
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].0, proc_core::codec::to_vec(&(FAST as u64)).unwrap_or_default());

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
