//! The one-shot commands beside the daemon: each reads what it needs, prints for a person or a
//! script, and returns the exit status the command line promises. The daemon itself is
//! [`crate::daemon`]; the command line's definitions and dispatch are [`crate::cli`].

pub mod check;
pub mod decode;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod journal;
pub mod render;
