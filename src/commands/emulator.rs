//! `kioskpay emulator`: the simulated Dintero API on a socket, for a kiosk or a script to talk
//! to (test tooling, feature `emulator`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::config::EXIT_CONFIG;

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Serves the emulator on `listen` until SIGTERM or Ctrl-C; refuses a bad `--time-scale`, fault
/// plan or signature secret file with exit 2 before binding.
pub async fn emulator(
    listen: std::net::SocketAddr,
    time_scale: f64,
    token_ttl: u64,
    faults: Option<PathBuf>,
    signature_secret_file: Option<PathBuf>,
) -> Result<ExitCode> {
    if !(time_scale > 0.0 && time_scale <= 100.0) {
        eprintln!("kioskpay: --time-scale {time_scale}: expected a number above 0 and at most 100");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    if !listen.ip().is_loopback() {
        eprintln!(
            "WARNING: --listen {listen} is not a loopback address: anyone who reaches it can use \
             the emulator's control API and its test credentials. Use 127.0.0.1 unless another \
             machine must reach it."
        );
    }
    let faults = match faults {
        Some(path) => match crate::emulator::FaultPlan::load(&path) {
            Ok(plan) => Some(plan),
            Err(e) => {
                eprintln!("kioskpay: --faults {}: {e:#}", path.display());
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => None,
    };
    let signature_secret = match signature_secret_file {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => Some(crate::secret::Secret::new(text.trim())),
            Ok(_) => {
                eprintln!(
                    "kioskpay: --signature-secret-file {}: the file is empty; write the secret \
                     the kiosk's callback.signature_secret_file holds",
                    path.display()
                );
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            Err(e) => {
                eprintln!("kioskpay: --signature-secret-file {}: {e}", path.display());
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; is another emulator running?"))?;
    let addr = listener.local_addr()?;
    eprintln!("Dintero emulator on http://{addr} (checkout and api); ledger: http://{addr}/_emulator/ledger; Ctrl-C stops");
    let config = crate::emulator::EmulatorConfig {
        time_scale,
        token_ttl: std::time::Duration::from_secs(token_ttl),
        faults,
        signature_secret,
        ..Default::default()
    };
    crate::emulator::serve(listener, config, wait_for_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
