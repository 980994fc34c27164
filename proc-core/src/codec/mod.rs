//! The byte format of every multiproc message: postcard, with errors that keep their cause.
//!
//! postcard drops the message of an error that a type's own `Serialize` or `Deserialize` raises
//! (`serde::ser::Error::custom`), leaving "Serde Serialization Error". These functions are
//! postcard's, byte for byte, except that such an error keeps its message: a type that refuses to
//! serialize, or a handle serialized outside a process start, says why.
//!
//! ```
//! use serde::ser::{Error as _, Serialize, Serializer};
//!
//! struct Refuses;
//!
//! impl Serialize for Refuses {
//!     fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
//!         Err(S::Error::custom("Refuses refuses to serialize"))
//!     }
//! }
//!
//! let bytes = proc_core::codec::to_vec(&(1u8, "two")).unwrap();
//! assert_eq!(bytes, postcard::to_stdvec(&(1u8, "two")).unwrap());
//! let back: (u8, String) = proc_core::codec::from_bytes(&bytes).unwrap();
//! assert_eq!(back, (1, "two".to_owned()));
//!
//! let e = proc_core::codec::to_vec(&(1u8, Refuses)).unwrap_err();
//! assert_eq!(e.to_string(), "Refuses refuses to serialize");
//! ```
//!
//! How: the value is serialized through a thin adapter around postcard's serializer (and read
//! through one around its deserializer) whose error type's `custom` sets the message aside on this
//! thread; postcard's error reaches the top as before, and the message is taken back there. A
//! value that encodes or decodes costs what it costs with postcard alone: the adapter only
//! forwards, its error is as small as postcard's, and only the failure path does more.

mod de;
mod ser;
#[cfg(test)]
mod test;

use std::cell::Cell;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value could not be encoded or decoded: the value's own message, or postcard's.
#[derive(thiserror::Error)]
#[error(transparent)]
pub struct Error {
    /// Boxed: a `Result` of the codec stays as small as postcard's, returned in registers.
    repr: Box<Repr>,
}

#[derive(Debug, thiserror::Error)]
enum Repr {
    /// postcard's own error (truncated bytes, a bad varint, a full buffer...).
    #[error(transparent)]
    Format(postcard::Error),
    /// The message of a type's own `Serialize` or `Deserialize`.
    #[error("{0}")]
    Custom(String),
}

impl Error {
    /// The message that the value's own `Serialize` or `Deserialize` gave (a type that refuses to
    /// serialize, a value out of range, a handle outside a transfer), if the failure was its own.
    pub fn custom_message(&self) -> Option<&str> {
        match &*self.repr {
            Repr::Custom(m) => Some(m),
            Repr::Format(_) => None,
        }
    }

    /// A type's own failure with this message (for decoders outside postcard).
    pub(crate) fn from_message(message: String) -> Self {
        Error { repr: Box::new(Repr::Custom(message)) }
    }

    /// Recovers the message set aside for a postcard error that stands for a type's own failure.
    #[cold]
    fn from_postcard(e: postcard::Error) -> Self {
        let custom = matches!(e, postcard::Error::SerdeSerCustom | postcard::Error::SerdeDeCustom);
        match custom.then(take_message).flatten() {
            Some(m) => Error { repr: Box::new(Repr::Custom(m)) },
            None => Error { repr: Box::new(Repr::Format(e)) },
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.repr, f)
    }
}

/// A specialized `Result` for the codec.
pub type Result<T, E = Error> = std::result::Result<T, E>;

thread_local! {
    /// The message of the failure on its way up, where it had to cross into postcard's error.
    static MESSAGE: Cell<Option<String>> = const { Cell::new(None) };
}

/// Serializes `value` into a new vector (postcard's `to_stdvec`).
///
/// # Errors
///
/// The value's own serialization error, with its message.
#[inline]
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(&ser::Capture(value)).map_err(Error::from_postcard)
}

/// Serializes `value` into `buf`, replacing what it held and keeping its allocation: for a
/// sender that reuses one buffer for many messages (no allocation, no page faults per message).
/// On error `buf` holds part of the value.
///
/// # Errors
///
/// The value's own serialization error, with its message.
///
/// # Examples
///
/// ```
/// let mut buf = Vec::with_capacity(64);
/// proc_core::codec::to_vec_into(&(7u8, "seven"), &mut buf).unwrap();
/// assert_eq!(buf, proc_core::codec::to_vec(&(7u8, "seven")).unwrap());
/// ```
#[inline]
pub fn to_vec_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    postcard::serialize_with_flavor(&ser::Capture(value), IntoVec(buf)).map_err(Error::from_postcard)
}

/// postcard's output into a borrowed vector, extended slice by slice.
struct IntoVec<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for IntoVec<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Serializes `value` onto the end of `writer` and hands it back (postcard's `to_extend`).
///
/// # Errors
///
/// The value's own serialization error, with its message.
#[inline]
pub fn to_extend<T: Serialize + ?Sized, W: Extend<u8>>(value: &T, writer: W) -> Result<W> {
    postcard::to_extend(&ser::Capture(value), writer).map_err(Error::from_postcard)
}

/// Serializes `value` into the front of `buf`, returning the part written (postcard's `to_slice`).
///
/// # Errors
///
/// The value's own serialization error, with its message, or a buffer too small for it.
#[inline]
pub fn to_slice<'b, T: Serialize + ?Sized>(value: &T, buf: &'b mut [u8]) -> Result<&'b mut [u8]> {
    postcard::to_slice(&ser::Capture(value), buf).map_err(Error::from_postcard)
}

/// Serializes `value` into a postcard output `flavor` of the caller's (postcard's
/// `serialize_with_flavor`): for a writer postcard has no flavor of, such as proc-queue's into a
/// shared-memory chunk.
///
/// # Errors
///
/// The value's own serialization error, with its message, or the flavor's own error.
#[inline]
pub fn serialize_with_flavor<T, F>(value: &T, flavor: F) -> Result<F::Output>
where
    T: Serialize + ?Sized,
    F: postcard::ser_flavors::Flavor,
{
    postcard::serialize_with_flavor(&ser::Capture(value), flavor).map_err(Error::from_postcard)
}

/// The number of bytes [`to_vec`] would produce for `value` (postcard's `serialized_size`).
///
/// # Errors
///
/// The value's own serialization error, with its message.
#[inline]
pub fn serialized_size<T: Serialize + ?Sized>(value: &T) -> Result<usize> {
    postcard::experimental::serialized_size(&ser::Capture(value)).map_err(Error::from_postcard)
}

/// Deserializes a `T` from the front of `bytes`, ignoring any bytes after it (postcard's
/// `from_bytes`).
///
/// # Errors
///
/// The type's own deserialization error, with its message, or bytes that are not a `T`.
#[inline]
pub fn from_bytes<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    postcard::from_bytes::<de::Capture<T>>(bytes).map(|c| c.0).map_err(Error::from_postcard)
}

/// Deserializes a `T` from the front of `bytes` and returns the bytes after it (postcard's
/// `take_from_bytes`).
///
/// # Errors
///
/// As for [`from_bytes`].
#[inline]
pub fn take_from_bytes<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<(T, &'a [u8])> {
    postcard::take_from_bytes::<de::Capture<T>>(bytes)
        .map(|(c, rest)| (c.0, rest))
        .map_err(Error::from_postcard)
}

/// The error of the adapters: the wrapped format's own error, laid out as it is (so that handing
/// it back and forth costs nothing). A value's own message is set aside on this thread when the
/// value raises it (`custom`); the format's error then stands for it, as postcard's always does.
#[repr(transparent)]
#[derive(Debug)]
struct Fault<E>(E);

/// Sets `msg` aside as the message of the failure on its way up (none while the thread ends).
#[cold]
fn set_aside(msg: &dyn fmt::Display) {
    let _ = MESSAGE.try_with(|m| m.set(Some(msg.to_string())));
}

/// Takes the message set aside, if there is one.
fn take_message() -> Option<String> {
    MESSAGE.try_with(Cell::take).ok().flatten()
}

/// Puts `message` back where [`take_message`] found it.
fn put_back(message: Option<String>) {
    let _ = MESSAGE.try_with(|m| m.set(message));
}

/// Displays the message set aside, handed to the wrapped format's `custom` (postcard drops it).
struct SetAside;

impl fmt::Display for SetAside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = take_message();
        let r = f.write_str(message.as_deref().unwrap_or("a value's own serialization error"));
        put_back(message);
        r
    }
}

impl<E: fmt::Display> fmt::Display for Fault<E> {
    /// The wrapped error, or, where it is postcard's stand-in for a value's own error, the
    /// message set aside (a value that puts a nested value's error into its own message).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        let stand_in = [postcard::Error::SerdeSerCustom, postcard::Error::SerdeDeCustom]
            .iter()
            .any(|e| e.to_string() == text);
        let message = if stand_in { take_message() } else { None };
        let r = match &message {
            Some(m) => f.write_str(m),
            None => f.write_str(&text),
        };
        put_back(message);
        r
    }
}

impl<E: std::error::Error> std::error::Error for Fault<E> {}

impl<E: serde::ser::Error> serde::ser::Error for Fault<E> {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        set_aside(&msg);
        Fault(E::custom(SetAside))
    }
}

impl<E: serde::de::Error> serde::de::Error for Fault<E> {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        set_aside(&msg);
        Fault(E::custom(SetAside))
    }
}
