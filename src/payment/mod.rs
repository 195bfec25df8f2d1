//! Payments: the state machine and the task that drives it.
//!
//! [`phase`] holds the pure rules (phases, events, how a polled session reads); [`flow`] is the
//! one task that applies them to real carts, calls Dintero and writes the journal; [`late`]
//! keeps the payments written off as not created under watch, in case Dintero creates them late;
//! [`poll`] decides how often a running payment is read;
//! [`storage`] is the health gate's proof that the journal's file system takes writes.

pub mod flow;
pub mod identity;
pub mod late;
pub mod phase;
pub mod poll;
pub mod storage;

pub use flow::{Command, Flow, FlowChannels, FlowConfig, PaymentReport};
pub use phase::{Final, Payment, Phase};
