//! The integration tests that run the kiosk inside the test process: the flow, the journal, the
//! inputs, the display and the Dintero client against the emulator on real loopback sockets and
//! pseudo-terminals, most on paused time.
//!
//! One test binary with a module per area instead of a binary per file: each binary is a link
//! step, and on a 2-core board-sized CI machine the links dominated the build. Tests that need a
//! process to themselves live elsewhere: `tests/storage.rs` (it lowers the process-wide file
//! size limit) and `tests/binary/` (each test starts the `kioskpay` binary as a user does).

#[path = "../support/mod.rs"]
mod support;

mod callback;
mod client;
mod codes;
mod console_stream;
mod daemon;
mod display;
mod emulator;
mod emulator_faults;
mod flow;
mod gpio;
mod identity;
mod input;
mod journal;
mod panels;
mod recovery;
mod screens;
