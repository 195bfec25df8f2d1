//! The integration tests that drive the `kioskpay` binary the way its users do: commands with
//! their arguments, exit statuses and output, a serial line through a real pseudo-terminal, the
//! daemon under a fake service manager, the soak, and Dintero's own Python SDK against the
//! emulator. One test binary with a module per command area (see `tests/inprocess/main.rs` for
//! why not one binary per file).

#[path = "../support/mod.rs"]
mod support;

mod bench;
mod cli;
mod cli_decode;
mod console_cli;
mod console_commissioning;
mod console_config;
mod console_hardware;
mod console_harness;
mod console_refunds;
mod console_session;
mod console_system;
mod console_terminal;
mod sdk;
mod service;
mod soak;
