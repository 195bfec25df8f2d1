//! `kioskpay check`: the config file validated and summarised, then (unless `--offline`) the
//! Dintero API and the terminal asked whether they are there now.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::config::Config;
use crate::dintero::client::{Client, ClientConfig};
use crate::dintero::{ApiError, Gateway, TerminalStatus};

/// Exit status of `check` when the file is valid but something it needs is not there now: the
/// Dintero API does not answer, or the scanner device does not exist.
pub const EXIT_NOT_REACHABLE: u8 = 3;

/// The `kiosk.id` that `packaging/kioskpay.toml` ships with. Two kiosks left on it give out the
/// same merchant references.
const PACKAGED_KIOSK_ID: &str = "kiosk-1";

/// Validates the file at `path` and prints what it says; then, unless `offline`, asks the API
/// for a token and the terminal for its status. Exit 0 when all is there, [`EXIT_NOT_REACHABLE`]
/// when the file is valid but the API, the terminal or the scanner is not.
pub async fn check(path: PathBuf, offline: bool) -> Result<ExitCode> {
    let config = Config::load(&path)?;
    println!("config {}: valid", path.display());
    println!(
        "  kiosk {} ({}, {}), max amount {}",
        config.kiosk.id,
        config.currency(),
        config.kiosk.language.code(),
        config.max_amount()
    );
    println!(
        "  account {} ({})",
        config.dintero.account_id,
        if config.dintero.account_id.is_sandbox() {
            "sandbox"
        } else {
            "production"
        }
    );
    println!(
        "  store {} terminal {} payout destination {}",
        config.store.id, config.store.terminal_id, config.store.payout_destination_id
    );
    println!("  journal in {}", config.state.dir.display());
    match &config.callback {
        Some(callback) => println!(
            "  signed callbacks on {}, called by Dintero as {}",
            callback.bind, callback.public_url
        ),
        None => println!("  no [callback]: payments are followed by polling only"),
    }
    if config.kiosk.id.as_str() == PACKAGED_KIOSK_ID {
        eprintln!(
            "WARNING: kiosk.id is still the packaged default {PACKAGED_KIOSK_ID:?}: every kiosk left \
             on it gives out the same merchant references. Set kiosk.id in {} to a name unique \
             to this kiosk (e.g. its hostname).",
            path.display()
        );
    }
    if offline {
        return Ok(ExitCode::SUCCESS);
    }
    let mut missing = false;
    if config.input.kind == crate::config::InputKind::Serial {
        let device = &config.input.device;
        if device.exists() {
            println!("scanner {}: present", device.display());
        } else {
            println!(
                "scanner {}: not present now; plug the scanner in, or set input.device (the \
                 daemon waits for it)",
                device.display()
            );
            missing = true;
        }
    }
    // The API's answer decides first (1 beats 3); a missing scanner alone is a 3.
    let found = if missing {
        ExitCode::from(EXIT_NOT_REACHABLE)
    } else {
        ExitCode::SUCCESS
    };
    let client = Client::new(ClientConfig::from_config(&config.dintero)?);
    match client.ensure_token().await {
        Ok(()) => println!("api {}: token OK", config.dintero.api_url),
        Err(e @ (ApiError::Unreachable { .. } | ApiError::Unknown { .. })) => {
            println!(
                "api {}: not reachable now ({e}); the file is valid, the kiosk will retry",
                config.dintero.api_url
            );
            return Ok(ExitCode::from(EXIT_NOT_REACHABLE));
        }
        Err(e) => {
            println!("api {}: {e}", config.dintero.api_url);
            return Ok(ExitCode::FAILURE);
        }
    }
    match client.terminal(config.store.terminal_id.as_str()).await {
        Ok(t) if t.status == TerminalStatus::Active => {
            println!(
                "terminal {}: ACTIVE ({})",
                t.terminal_id,
                t.device_serial_number
                    .as_deref()
                    .unwrap_or("serial unknown")
            );
            Ok(found)
        }
        Ok(t) => {
            println!(
                "terminal {}: {} — it will not take payments until it is ACTIVE",
                t.terminal_id,
                t.status.as_str()
            );
            Ok(ExitCode::FAILURE)
        }
        Err(ApiError::Auth { status: 403, .. }) => {
            println!(
                "terminal {}: the API client may not read terminals (403); payments may still work",
                config.store.terminal_id
            );
            Ok(found)
        }
        Err(e) => {
            println!("terminal {}: {e}", config.store.terminal_id);
            Ok(ExitCode::FAILURE)
        }
    }
}
