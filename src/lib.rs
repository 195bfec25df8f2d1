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
//! it could neither take nor show. With `[callback]` configured, the [`callback`] listener tells
//! the flow when Dintero calls about a payment, and the flow reads that payment at once; what a
//! callback says is never taken for what the payment came to.
//!
//! The imports follow the data: a module imports only from the layers below its own, and a
//! test (`src/layers.rs`) fails on any import that goes sideways or up. Lowest first:
//!
//! ```text
//!  cli                             clap definitions and dispatch only
//!  demo, soak, bench               test tooling (feature `emulator`)
//!  daemon, commands, console,      wiring: `run` starts the tasks and handles signals; the
//!  logging                         one-shot commands (check, journal, decode, render); the
//!                                  technician console; where logs go
//!  metrics, config, control        observers; config parses every section into typed values;
//!                                  the control socket the console talks to the daemon over
//!  payment, refund                 the flow, its phases, identity checks, the late watch; the
//!                                 refund desk (refunds and voids, journaled like payments)
//!  input, gpio, display, emulator, where carts come from, where the customer looks, and the
//!  callback                        listener for Dintero's signed callbacks (a nudge to re-read)
//!  systemd, dintero                the watchdog heartbeat, the API client and its ids
//!  state                           KioskState: what the flow publishes
//!  messages                        InputEvent, CustomerReason, Command, PanelHealth,
//!                                  CallbackNudge
//!  board                           board files: pin maps, display boards
//!  cart
//!  money, secret, setting, journal
//!  allocator                       glibc's arena cap and trim (flat memory)
//! ```
//!
//! Each subsystem owns its config section ([`input::InputConfig`], [`gpio::GpioConfig`],
//! [`display::DisplayConfig`]) and checks it; [`config`] composes them, loads the file and
//! parses it into typed values, so a loaded [`config::Config`] cannot hold an invalid one.
//!
//! Where to start reading: [`payment::flow`] (what happens to a cart), [`payment::phase`] (the
//! state machine), [`dintero`] (the API contract in types), `emulator` (the simulated Dintero
//! the demo, the tests and the `soak` run against; feature `emulator`), [`daemon`] (how the
//! tasks are wired).
#![deny(missing_docs)]

pub mod allocator;
#[cfg(feature = "emulator")]
pub mod bench;
pub mod board;
pub mod callback;
pub mod cart;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
#[cfg(feature = "emulator")]
pub mod demo;
pub mod dintero;
pub mod display;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod gpio;
pub mod input;
pub mod journal;
#[cfg(test)]
mod layers;
pub mod logging;
pub mod messages;
pub mod metrics;
pub mod money;
pub mod payment;
pub mod refund;
pub mod secret;
pub mod setting;
#[cfg(feature = "emulator")]
pub mod soak;
pub mod state;
pub mod systemd;
