//! Typed proxies. Each holds a reference to an object on the manager; the object lives while any
//! proxy (in any process) refers to it. Reads return owned copies: only the proxies' methods
//! change the shared object (`dict.get(k)` gives a copy, and changing the copy changes nothing on
//! the manager — Python silently loses `d['k'].append(1)`; here the types make it plain).
//!
//! A proxy is a handle: pass it to a child as a start argument (or through a multiproc
//! connection) and the child reaches the same object. Inside another shared object (a proxy as a
//! dict's value) it is stored as a reference that keeps its object alive while it is stored.
//!
//! - `handle`: [`Handle`], the reference every proxy wraps: the calls, how values are encoded
//!   (with the proxies inside them), and how a proxy travels.
//! - `collections`: [`Dict`], [`List`], [`Namespace`], [`Value`], [`Array`].
//! - `queue`: [`Queue`].
//! - `sync`: [`Lock`] (with [`LockGuard`]), [`Semaphore`], [`Event`], [`Condition`], [`Barrier`].
//! - `custom`: [`Proxy`], for registered types.
//! - `lookup`: the traits a manager uses to look proxies up by name ([`FromObject`]) and to
//!   publish them ([`AsObject`]).
//! - Here: the `proxy!` and `from_object!` macros that the files above use to define each proxy
//!   type (defined before the `mod` items, so that those files see them).

/// Defines a proxy type: a shared handle, `Clone`, `Debug`, serde as a handle, [`AsObject`].
macro_rules! proxy {
    ($(#[$meta:meta])* $name:ident $(<$($t:ident),*>)?) => {
        $(#[$meta])*
        pub struct $name $(<$($t),*>)? {
            handle: ::std::sync::Arc<$crate::proxy::handle::Handle>,
            $(_types: ::std::marker::PhantomData<fn() -> ($($t,)*)>,)?
        }

        impl $(<$($t),*>)? Clone for $name $(<$($t),*>)? {
            fn clone(&self) -> Self {
                $name { handle: self.handle.clone(), $(_types: ::std::marker::PhantomData::<fn() -> ($($t,)*)>,)? }
            }
        }

        impl $(<$($t),*>)? ::std::fmt::Debug for $name $(<$($t),*>)? {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.handle).finish()
            }
        }

        impl $(<$($t),*>)? ::serde::Serialize for $name $(<$($t),*>)? {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> ::std::result::Result<S::Ok, S::Error> {
                ::serde::Serialize::serialize(&*self.handle, serializer)
            }
        }

        impl<'de $(, $($t),*)?> ::serde::Deserialize<'de> for $name $(<$($t),*>)? {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::std::result::Result<Self, D::Error> {
                let handle = <$crate::proxy::handle::Handle as ::serde::Deserialize>::deserialize(deserializer)?;
                Ok($name { handle: ::std::sync::Arc::new(handle), $(_types: ::std::marker::PhantomData::<fn() -> ($($t,)*)>,)? })
            }
        }

        impl $(<$($t),*>)? $name $(<$($t),*>)? {
            pub(crate) fn from_handle(handle: ::std::sync::Arc<$crate::proxy::handle::Handle>) -> Self {
                $name { handle, $(_types: ::std::marker::PhantomData::<fn() -> ($($t,)*)>,)? }
            }
        }

        impl $(<$($t),*>)? $crate::proxy::lookup::AsObject for $name $(<$($t),*>)? {
            fn object_id(&self) -> u64 {
                self.handle.id()
            }
        }
    };
}

/// Implements [`FromObject`] for a built-in proxy type: it fits the objects whose kind matches
/// the pattern.
macro_rules! from_object {
    ($name:ident $(<$($t:ident),*>)?, $pat:pat) => {
        impl $(<$($t),*>)? $crate::proxy::lookup::FromObject for $name $(<$($t),*>)? {
            fn fits(kind: &$crate::proxy::lookup::KindRef<'_>) -> bool {
                matches!(kind.0, $pat)
            }
            fn from_object(handle: $crate::proxy::lookup::ObjectHandle) -> Self {
                $name::from_handle(handle.0)
            }
        }
    };
}

mod collections;
mod custom;
mod handle;
mod lookup;
mod queue;
mod sync;

pub use collections::{Array, Dict, List, Namespace, Value};
pub use custom::Proxy;
pub(crate) use handle::Handle;
pub use lookup::{AsObject, FromObject};
pub(crate) use lookup::{KindRef, ObjectHandle};
pub use queue::Queue;
pub use sync::{Barrier, Condition, Event, Lock, LockGuard, Semaphore};
