//! Whether a failure at a seam (map store, netlink, IPVS generic netlink,
//! loader) is worth retrying: the kernel running short (`EAGAIN`,
//! `ENOMEM`, `EBUSY`, `ENOBUFS`...) passes, while a refusal (`EPERM`,
//! `EINVAL`, a full map, a missing map, a layout mismatch) comes back the
//! same until something changes. Each seam's error type says which it is
//! ([`Classify`]); [`kind_of`] finds the answer in any error's chain, given
//! the seams' types by whoever sits above them all (the agent's
//! `retry.rs`), so this module imports none of them.

use std::{error::Error, io};

/// What a retry of the same operation can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A passing condition: try again later.
    Retryable,
    /// The same input fails the same way: report it, wait for a change.
    Fatal,
}

/// An error that knows its [`Kind`].
pub trait Classify {
    fn kind(&self) -> Kind;
}

/// The kind of a kernel error number.
pub fn of_errno(errno: i32) -> Kind {
    match errno {
        libc::EAGAIN
        | libc::EINTR
        | libc::ENOMEM
        | libc::EBUSY
        | libc::ENOBUFS
        | libc::ETIMEDOUT => Kind::Retryable,
        _ => Kind::Fatal,
    }
}

/// The kind of an I/O error: by its errno, else by what it says (an
/// interrupted or timed-out call passes; "unsupported" does not).
pub fn of_io(e: &io::Error) -> Kind {
    match e.raw_os_error() {
        Some(errno) => of_errno(errno),
        None => match e.kind() {
            io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                Kind::Retryable
            }
            _ => Kind::Fatal,
        },
    }
}

/// The kind of `e`: decided by the outermost error in its chain that
/// `typed` knows (a seam's error), or else by the first I/O error. An
/// error with neither is retried, as every failure was before errors were
/// typed.
pub fn kind_of(e: &anyhow::Error, typed: impl Fn(&(dyn Error + 'static)) -> Option<Kind>) -> Kind {
    let chain = || e.chain();
    chain()
        .find_map(typed)
        .or_else(|| chain().find_map(|c| c.downcast_ref::<io::Error>().map(of_io)))
        .unwrap_or(Kind::Retryable)
}

/// The kind of `e` if it is a `T`: one entry of a `typed` list for [`kind_of`].
pub fn as_a<T: Classify + Error + 'static>(e: &(dyn Error + 'static)) -> Option<Kind> {
    e.downcast_ref::<T>().map(Classify::kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_kernel_running_short_is_retryable_and_a_refusal_is_not() {
        for errno in [libc::EAGAIN, libc::ENOMEM, libc::EBUSY, libc::ENOBUFS] {
            assert_eq!(of_errno(errno), Kind::Retryable, "errno {errno}");
        }
        for errno in [
            libc::EPERM,
            libc::EINVAL,
            libc::E2BIG,
            libc::ENOENT,
            libc::EACCES,
        ] {
            assert_eq!(of_errno(errno), Kind::Fatal, "errno {errno}");
        }
    }

    #[test]
    fn the_chain_is_searched_below_context() {
        let untyped = |_: &(dyn Error + 'static)| None;
        let busy: anyhow::Error = io::Error::from_raw_os_error(libc::EBUSY).into();
        let busy = busy.context("IPVS: adding a service");
        assert_eq!(kind_of(&busy, untyped), Kind::Retryable);
        let denied: Result<(), io::Error> = Err(io::Error::from_raw_os_error(libc::EPERM));
        let denied = denied.context("netlink: adding a route").unwrap_err();
        assert_eq!(kind_of(&denied, untyped), Kind::Fatal);
        assert_eq!(
            kind_of(&anyhow::anyhow!("no cause"), untyped),
            Kind::Retryable
        );
        // A typed error decides before the errno under it.
        assert_eq!(kind_of(&busy, |_| Some(Kind::Fatal)), Kind::Fatal);
    }
}
