//! Payments: the state machine and the task that drives it.
//!
//! [`state`] holds the pure rules (phases, events, how a polled session reads); [`flow`] is the
//! one task that applies them to real carts, calls Dintero and writes the journal.

pub mod flow;
pub mod state;

pub use flow::{Command, Flow, FlowChannels, FlowConfig, PaymentReport};
pub use state::{Final, Payment, Phase};
