//! The console's commands, one file per family. Each family is a table of
//! [`Spec`](super::command::Spec)s; [`ALL`] is what `help` lists and the session dispatches on.
//!
//! | family | commands | needs the daemon |
//! |--------|----------|------------------|
//! | [`status`] | `status` | yes |
//! | [`payments`] | `payments`, `pending` | no: they read the journal |
//! | [`hardware`] | `test scanner` (and `test network`, `test terminal` from `checks`) | yes, and maintenance on |

pub mod hardware;
pub mod payments;
pub mod status;

use super::command::Spec;

/// Every family's commands, in the order `help` lists them.
pub const ALL: &[&[Spec]] = &[status::COMMANDS, payments::COMMANDS, hardware::COMMANDS];

/// Formats minor units as the kiosk shows money (`399,00 NOK`), or says what it is when the
/// currency is not one the kiosk knows.
pub fn money(minor: u64, currency: &str) -> String {
    use crate::money::{Currency, Money};
    match Currency::from_code(currency) {
        Some(c) => Money::new(minor, c).to_string(),
        None => format!("{minor} (minor units) {currency}"),
    }
}
