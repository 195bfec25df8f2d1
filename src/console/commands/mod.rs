//! The console's commands, one file per family. Each family is a table of
//! [`Spec`](super::command::Spec)s; [`ALL`] is what `help` lists and the session dispatches on.
//!
//! | family | commands | needs the daemon |
//! |--------|----------|------------------|
//! | [`status`] | `status` | yes |
//! | [`payments`] | `payments`, `pending`, `payment`, `resolve`, `reconcile` | no for `payments`, `pending` and `payment` (they read the journal; `payment` adds what Dintero says when the daemon runs); `resolve` asks the daemon, the journals' writer; `reconcile` asks the daemon for Dintero's list |
//! | [`system`] | `logs`, `restart`, `factory-reset` | no: they use journalctl and systemctl |
//! | [`checks`] | `test network`, `test terminal` (run by `test` in [`hardware`]) | network: no, it reads the config file and calls Dintero itself; terminal: yes |
//! | [`terminal`] | `terminal status\|sync\|end-of-day\|send-logs\|check-update\|open-menu` | yes: the daemon holds the API client |
//! | [`config`] | `config show\|get\|set\|diff\|apply\|revert`, `confirm` | no: `apply` and `confirm` ask it when it runs |
//! | [`access`] | `credentials set`, `pin change`, `technician add\|remove\|list` | no: `credentials set` has it check the new credentials when it runs |
//! | [`hardware`] | `test display\|scanner\|gpio` (and `test network\|terminal` through [`checks`]) | yes, and maintenance on |
//! | [`refunds`] | `refund`, `void` | yes: the daemon's refund desk calls Dintero |

pub mod access;
pub mod checks;
pub mod config;
pub mod hardware;
pub mod payments;
pub mod refunds;
pub mod status;
pub mod system;
pub mod terminal;

use super::command::Spec;

/// Every family's commands, in the order `help` lists them.
pub const ALL: &[&[Spec]] = &[
    status::COMMANDS,
    payments::COMMANDS,
    refunds::COMMANDS,
    terminal::COMMANDS,
    hardware::COMMANDS,
    system::COMMANDS,
    config::COMMANDS,
    access::COMMANDS,
];

/// Formats minor units as the kiosk shows money (`399,00 NOK`), or says what it is when the
/// currency is not one the kiosk knows.
pub fn money(minor: u64, currency: &str) -> String {
    use crate::money::{Currency, Money};
    match Currency::from_code(currency) {
        Some(c) => Money::new(minor, c).to_string(),
        None => format!("{minor} (minor units) {currency}"),
    }
}
