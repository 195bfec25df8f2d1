//! One kiosk as `kioskpay run` wires it, in this process, with its scanner line and a watcher
//! that timestamps what the display task would be told.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cart::CartSource;
use crate::config::Config;
use crate::daemon::{InputWiring, Kiosk};
use crate::dintero::client::{Client, ClientConfig};
use crate::emulator::sandbox;
use crate::input::ScanConfig;
use crate::payment::flow::PaymentReport;
use crate::state::KioskState;

/// Longest a bench payment may take: the slow issuer's 45 s with room to spare.
const PAYMENT_GUARD: Duration = Duration::from_secs(150);

/// A running bench kiosk.
pub struct BenchKiosk {
    kiosk: Kiosk,
    scanner: DuplexStream,
    /// When each payment's approved state was published, by merchant reference.
    approved: Arc<Mutex<HashMap<String, Instant>>>,
    watcher: JoinHandle<()>,
    /// Keeps the state directory for as long as the kiosk runs.
    _dir: tempfile::TempDir,
}

/// One payment as the bench saw it.
pub struct Paid {
    /// When the scan's last byte was written.
    pub scanned: Instant,
    /// When the flow reported the outcome.
    pub done: Instant,
    /// The flow's report.
    pub report: PaymentReport,
}

impl BenchKiosk {
    /// Starts a kiosk paired with `terminal` of the emulator at `base`, with `overrides`
    /// (TOML) over the sandbox config. It reads plain `AMOUNT;REFERENCE` lines, draws nowhere,
    /// and shows a result for 1 s. With `callback_secret` it listens for signed callbacks on a
    /// free loopback port.
    pub fn start(
        base: &str,
        terminal: &str,
        overrides: &str,
        callback_secret: Option<&str>,
    ) -> Result<BenchKiosk> {
        let dir = tempfile::Builder::new()
            .prefix("kioskpay-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let mut overrides = overrides.to_string();
        if let Some(secret) = callback_secret {
            overrides.push_str(&callback(dir.path(), secret)?);
        }
        let config = config(base, dir.path(), terminal, &overrides)?;
        let client = Client::new(ClientConfig::from_config(&config.dintero)?);
        let kiosk = Kiosk::start(&config, Arc::new(client), InputWiring::External)?;
        let (scanner, scanner_rx) = tokio::io::duplex(1024);
        let tx = kiosk.inputs.clone();
        let scan = ScanConfig::from_config(&config.input, config.currency());
        tokio::spawn(async move {
            crate::input::read_carts(scanner_rx, &scan, CartSource::Serial, &tx).await
        });
        let approved = Arc::new(Mutex::new(HashMap::new()));
        let seen = approved.clone();
        let mut states = kiosk.state.clone();
        let watcher = tokio::spawn(async move {
            while states.changed().await.is_ok() {
                let now = Instant::now();
                if let KioskState::Approved { reference, .. } = &*states.borrow_and_update() {
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(reference.clone())
                        .or_insert(now);
                }
            }
        });
        Ok(BenchKiosk {
            kiosk,
            scanner,
            approved,
            watcher,
            _dir: dir,
        })
    }

    /// Waits until the kiosk takes carts.
    pub async fn idle(&mut self) -> Result<()> {
        let mut states = self.kiosk.state.clone();
        tokio::time::timeout(PAYMENT_GUARD, states.wait_for(|s| *s == KioskState::Idle))
            .await
            .map_err(|_| {
                anyhow!(
                    "the kiosk did not become idle within {} s (it shows {:?})",
                    PAYMENT_GUARD.as_secs(),
                    *self.kiosk.state.borrow()
                )
            })?
            .map_err(|_| anyhow!("the kiosk stopped"))?;
        Ok(())
    }

    /// Waits until idle, scans `amount` (minor units) and waits for its outcome.
    pub async fn pay(&mut self, amount: u64, reference: &str) -> Result<Paid> {
        self.idle().await?;
        let line = format!("{}.{:02};{reference}\r\n", amount / 100, amount % 100);
        self.scanner.write_all(line.as_bytes()).await?;
        let scanned = Instant::now();
        let report = tokio::time::timeout(PAYMENT_GUARD, self.kiosk.reports.recv())
            .await
            .map_err(|_| {
                anyhow!(
                    "no outcome for {line:?} within {} s",
                    PAYMENT_GUARD.as_secs()
                )
            })?
            .ok_or_else(|| anyhow!("the kiosk stopped"))?;
        Ok(Paid {
            scanned,
            done: Instant::now(),
            report,
        })
    }

    /// When the approved state of `reference` was published.
    pub fn approved_at(&self, reference: &str) -> Option<Instant> {
        self.approved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(reference)
            .copied()
    }

    /// Stops the kiosk.
    pub async fn stop(self) -> Result<()> {
        self.watcher.abort();
        self.kiosk.stop().await?;
        Ok(())
    }
}

/// The sandbox config with the bench's input, display and result screen, then `overrides`.
fn config(base: &str, dir: &Path, terminal: &str, overrides: &str) -> Result<Config> {
    Ok(Config::load(&write_config(
        base, dir, terminal, overrides,
    )?)?)
}

/// Writes [`config`]'s text and the client secret it names into `dir`; returns the config's
/// path, for a kiosk that runs as `kioskpay run` instead of in this process.
pub(super) fn write_config(
    base: &str,
    dir: &Path,
    terminal: &str,
    overrides: &str,
) -> Result<PathBuf> {
    sandbox::write_secret(dir)?;
    let ours = "[input]\nkind = \"stdin\"\nformats = [\"plain\"]\n[display]\nkind = \"none\"\n\
                [payment]\nresult_screen_s = 1\n";
    let text = sandbox::config(base, dir, terminal, &[ours, overrides]).map_err(|e| anyhow!(e))?;
    let path = dir.join("kioskpay.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A `[callback]` section on a free loopback port, its secret written to `<dir>/callback_secret`
/// with the mode the daemon requires.
pub(super) fn callback(dir: &Path, secret: &str) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    // The public URL must name the port before the kiosk binds it: one the OS just gave out.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let path = dir.join("callback_secret");
    std::fs::write(&path, format!("{secret}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(format!(
        "[callback]\nbind = \"127.0.0.1:{port}\"\npublic_url = \
         \"http://127.0.0.1:{port}/dintero/callback\"\nsignature_secret_file = {}\n",
        toml::Value::String(path.display().to_string())
    ))
}
