//! The console's commands, one file per family. Each family is a table of
//! [`Spec`](super::command::Spec)s; [`ALL`] is what `help` lists and the session dispatches on.
//!
//! | family | commands | needs the daemon |
//! |--------|----------|------------------|
//! | [`status`] | `status` | yes |
//! | [`payments`] | `payments`, `pending`, `payment`, `resolve`, `reconcile` | no for `payments`, `pending` and `payment` (they read the journal; `payment` adds what Dintero says when the daemon runs); `resolve` asks the daemon, the journals' writer; `reconcile` asks the daemon for Dintero's list |
//! | [`refunds`] | `refund`, `void` | yes: the daemon's refund desk calls Dintero |

pub mod payments;
pub mod refunds;
pub mod status;

use super::command::Spec;

/// Every family's commands, in the order `help` lists them.
pub const ALL: &[&[Spec]] = &[status::COMMANDS, payments::COMMANDS, refunds::COMMANDS];

/// Formats minor units as the kiosk shows money (`399,00 NOK`), or says what it is when the
/// currency is not one the kiosk knows.
pub fn money(minor: u64, currency: &str) -> String {
    use crate::money::{Currency, Money};
    match Currency::from_code(currency) {
        Some(c) => Money::new(minor, c).to_string(),
        None => format!("{minor} (minor units) {currency}"),
    }
}
