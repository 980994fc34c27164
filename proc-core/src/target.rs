//! `Target`: the functions a child process can run, and the trampoline that re-creates one in a
//! re-executed child.

use std::os::fd::OwnedFd;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::handle::{deserialize_with_fds, serialize_with_fds};

/// A function that can run in a child process with arguments `Args` (a tuple).
///
/// Implemented for every `FnOnce(A1, ..., An) -> R + Send + 'static` with `n` from 0 to 12, taking
/// its arguments as the tuple `(A1, ..., An)`, as Python's `args=(...)`. Plain `fn` items and
/// non-capturing closures work under every start method; closures that capture values work only
/// with [`StartMethod::Fork`] (elsewhere `start` returns an error saying so), because a re-executed
/// child can only re-create a target that has no data.
///
/// A re-executed child re-creates the target from its type alone, so [`Process::new`] also requires
/// the target to be `Copy`: fn items and closures that capture nothing (or only `Copy` values) are.
/// A closure that owns a value which must not be duplicated (a non-`Copy` proof or token type,
/// even a zero-sized one) is refused at compile time there; start it with [`Process::fork`],
/// which runs the one real value in a forked copy of this process.
///
/// [`StartMethod::Fork`]: crate::StartMethod::Fork
/// [`Process::new`]: crate::Process::new
/// [`Process::fork`]: crate::Process::fork
pub trait Target<Args>: Send + 'static {
    /// What the target returns; [`Process::join`](crate::Process::join) hands it back.
    type Output;

    /// Calls the target.
    fn call(self, args: Args) -> Self::Output;
}

macro_rules! impl_target {
    ($($a:ident)*) => {
        impl<Func, Ret, $($a,)*> Target<($($a,)*)> for Func
        where
            Func: FnOnce($($a),*) -> Ret + Send + 'static,
        {
            type Output = Ret;

            #[allow(non_snake_case)]
            fn call(self, ($($a,)*): ($($a,)*)) -> Ret {
                self($($a),*)
            }
        }
    };
}

impl_target!();
impl_target!(A1);
impl_target!(A1 A2);
impl_target!(A1 A2 A3);
impl_target!(A1 A2 A3 A4);
impl_target!(A1 A2 A3 A4 A5);
impl_target!(A1 A2 A3 A4 A5 A6);
impl_target!(A1 A2 A3 A4 A5 A6 A7);
impl_target!(A1 A2 A3 A4 A5 A6 A7 A8);
impl_target!(A1 A2 A3 A4 A5 A6 A7 A8 A9);
impl_target!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10);
impl_target!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10 A11);
impl_target!(A1 A2 A3 A4 A5 A6 A7 A8 A9 A10 A11 A12);

/// The trampoline for target `F` with arguments `A`, whose address a re-executed child gets as an
/// `EntryPoint`: deserializes the arguments, re-creates `F`, calls it and serializes the result.
pub(crate) fn trampoline<F, A>(
    args: Vec<u8>,
    fds: Vec<OwnedFd>,
) -> std::result::Result<(Vec<u8>, Vec<OwnedFd>), String>
where
    F: Target<A> + Copy,
    A: DeserializeOwned,
    F::Output: Serialize,
{
    let args: A = deserialize_with_fds(&args, fds).map_err(|e| format!("arguments: {}", e.with_cause()))?;
    assert!(std::mem::size_of::<F>() == 0, "only zero-sized targets are re-created in a child");
    // SAFETY: `F` is zero-sized (the parent refuses to start other targets this way, and the
    // assertion above re-checks it), so reading one from a dangling, aligned pointer reads no
    // bytes. `F` is also `Copy`: a zero-sized `Copy` closure (or fn item) carries no value whose
    // duplication could break an invariant (a non-`Copy` zero-sized proof it owned would make it
    // non-`Copy`), so producing one here is a copy of the parent's.
    let target: F = unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() };
    let output = target.call(args);
    serialize_with_fds(&output).map_err(|e| format!("return value: {}", e.with_cause()))
}
