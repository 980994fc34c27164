//! The proxy of an object of a registered type: [`Proxy`] (see [`Shared`]).

use super::handle::enc;
use super::lookup::{FromObject, KindRef, ObjectHandle};
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::registry::Shared;
use crate::wire::{Kind, Method};

proxy! {
    /// A proxy of a registered type `T` (see [`Shared`]): only `T`'s declared requests can be
    /// sent.
    ///
    /// # Errors
    ///
    /// [`Error::Connection`], [`Error::Serialize`], [`Error::Remote`] when the method panicked
    /// on the server, [`Error::MethodNotAllowed`] when the server's `T` does not declare the
    /// request (another program's type of the same name).
    Proxy<T>
}

impl<T: Shared> Proxy<T> {
    /// Calls a method of the object on the server.
    pub fn call(&self, request: &T::Request) -> Result<T::Response> {
        self.handle.value(Method::Custom { method: String::new(), args: enc(request)? })
    }
}

impl<T: Shared> FromObject for Proxy<T> {
    /// An object of a registered type, of type `T` (compared by the Rust type's name).
    fn fits(kind: &KindRef<'_>) -> bool {
        matches!(kind.0, Kind::Custom { type_name, .. } if type_name == std::any::type_name::<T>())
    }
    fn from_object(handle: ObjectHandle) -> Self {
        Proxy::from_handle(handle.0)
    }
}
