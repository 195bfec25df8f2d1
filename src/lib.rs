//! # kioskpay
//!
//! The payment controller of an unattended self-service kiosk: a Linux single-board computer
//! that takes cart totals from the kiosk's input unit and has a paired Dintero in-person card
//! terminal charge them.
//!
//! ```text
//!  scanner / stdin / GPIO ──Cart──▶ payment flow ──calls──▶ Dintero client ──HTTP──▶ Dintero
//!   (input tasks)           mpsc    (one task: owns     (ureq on tokio's             (or emulator)
//!                                    the payment,        blocking pool)
//!                                    writes the journal)
//!                                       │ watch: KioskState
//!                                       ├──▶ display task ──▶ SPI panel / framebuffer / PNG / terminal
//!                                       ├──▶ GPIO handshake outputs
//!                                       └──▶ systemd notify/watchdog, metrics
//! ```
//!
//! Data flows one way. Inputs only produce [`cart::Cart`]s; the [`payment`] flow is the only
//! task that calls Dintero and the only writer of the [`journal`]; the [`display`], the GPIO
//! outputs and the [`metrics`] observe the published [`state::KioskState`] and never drive a
//! payment. The scanner and the display report their own health so the flow can refuse carts
//! it could neither take nor show.
//!
//! Where to start reading: [`payment::flow`] (what happens to a cart), [`payment::state`] (the
//! state machine), [`dintero`] (the API contract in types), [`emulator`] (the simulated Dintero
//! the demo, the tests and the [`soak`] run against), [`daemon`] (how the tasks are wired).
#![deny(missing_docs)]

pub mod cart;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod demo;
pub mod dintero;
pub mod display;
pub mod emulator;
pub mod input;
pub mod journal;
pub mod metrics;
pub mod money;
pub mod payment;
pub mod secret;
pub mod soak;
pub mod state;
pub mod systemd;
