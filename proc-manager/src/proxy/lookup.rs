//! What a manager uses to look a proxy up by name ([`FromObject`]: any proxy type, checked
//! against the object's kind) and to publish one ([`AsObject`]).

use std::sync::Arc;

use super::handle::Handle;
use crate::wire::Kind;

/// What a manager can look up by name: any proxy type, checked against the object's kind.
pub trait FromObject: Sized {
    /// Whether an object of `kind` fits this proxy.
    #[doc(hidden)]
    fn fits(kind: &KindRef<'_>) -> bool;
    /// The proxy.
    #[doc(hidden)]
    fn from_object(handle: ObjectHandle) -> Self;
}

/// An object's kind, as [`FromObject`] sees it.
#[doc(hidden)]
#[derive(Debug)]
pub struct KindRef<'a>(pub(crate) &'a Kind);

/// A reference to an object, as [`FromObject`] takes it.
#[doc(hidden)]
#[derive(Debug)]
pub struct ObjectHandle(pub(crate) Arc<Handle>);

/// The id of an object, for publishing it under a name.
pub trait AsObject {
    /// The object's id on its manager.
    #[doc(hidden)]
    fn object_id(&self) -> u64;
}
