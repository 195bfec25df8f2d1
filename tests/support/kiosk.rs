//! The whole kiosk in-process (flow, journal, real HTTP client, PNG display) against the
//! emulator on loopback, with a scanner line into the real parser: what `kioskpay run` wires up,
//! minus the process, so a test can stop it, keep its state directory and start it again.

use std::sync::Arc;
use std::time::Duration;

use kioskpay::cart::CartSource;
use kioskpay::config::Config;
use kioskpay::daemon::{InputWiring, Kiosk};
use kioskpay::dintero::client::{Client, ClientConfig};
use kioskpay::dintero::{Order, OrderItem, SessionProfileRequest, SessionUrl, Store};
use kioskpay::input::ScanConfig;
use kioskpay::payment::flow::PaymentReport;
use kioskpay::state::KioskState;
use tokio::io::AsyncWriteExt;

/// A kiosk running in this process, with the emulator it talks to and its state directory.
pub struct Running {
    pub kiosk: Kiosk,
    pub scanner: tokio::io::DuplexStream,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub emulator: kioskpay::emulator::EmulatorHandle,
}

/// A fresh emulator and state directory, and a kiosk on them reading plain and GS1 codes.
pub async fn start(time_scale: f64, extra: &str) -> Running {
    let emulator = super::emulator(time_scale).await;
    let dir = tempfile::tempdir().unwrap();
    boot(emulator, dir, "formats = [\"plain\", \"gs1\"]", extra)
}

/// Starts a kiosk in `dir` (a journal there is recovered) with `input` as its `[input]` keys.
pub fn boot(
    emulator: kioskpay::emulator::EmulatorHandle,
    dir: tempfile::TempDir,
    input: &str,
    extra: &str,
) -> Running {
    let base = emulator.base_url();
    let (kiosk, scanner) = kiosk_on(&base, dir.path(), input, extra, "T12345678-T0001");
    Running {
        kiosk,
        scanner,
        base,
        dir,
        emulator,
    }
}

/// A kiosk in `dir` paired with `terminal`, talking to the emulator at `base`, and the scanner
/// line into it.
pub fn kiosk_on(
    base: &str,
    dir: &std::path::Path,
    input: &str,
    extra: &str,
    terminal: &str,
) -> (Kiosk, tokio::io::DuplexStream) {
    let extra = format!("[input]\n{input}\n[payment]\npoll_interval_ms = 50\npickup_timeout_s = 1\nresult_screen_s = 1\ntimeout_s = 10\n{extra}");
    let config = Config::load(&super::write_config_on(dir, base, &extra, terminal)).unwrap();
    let client = Client::new(ClientConfig::from_config(&config.dintero).unwrap());
    let kiosk = Kiosk::start(&config, Arc::new(client), InputWiring::External).unwrap();
    let (scanner, scanner_rx) = tokio::io::duplex(256);
    let tx = kiosk.inputs.clone();
    let scan = ScanConfig::from_config(&config.input, config.currency());
    tokio::spawn(async move {
        kioskpay::input::read_carts(scanner_rx, &scan, CartSource::Serial, &tx).await
    });
    (kiosk, scanner)
}

impl Running {
    pub async fn idle(&mut self) {
        let mut states = self.kiosk.state.clone();
        tokio::time::timeout(Duration::from_secs(60), async {
            states
                .wait_for(|s| *s == KioskState::Idle)
                .await
                .map(|_| ())
        })
        .await
        .unwrap_or_else(|_| panic!("not idle: {:?}", *self.kiosk.state.borrow()))
        .unwrap();
    }

    pub async fn scan(&mut self, line: &str) -> PaymentReport {
        self.scanner
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(120), self.kiosk.reports.recv())
            .await
            .expect("an outcome within 120 s")
            .expect("kiosk running")
    }

    pub async fn stop(self) {
        self.kiosk.stop().await.unwrap();
        self.emulator.shutdown().await;
    }

    /// Stops the kiosk only; the emulator and the state directory stay for a restart.
    pub async fn halt(self) -> (kioskpay::emulator::EmulatorHandle, tempfile::TempDir) {
        self.kiosk.stop().await.unwrap();
        (self.emulator, self.dir)
    }
}

/// A Dintero client for the emulator at `base` (the seeded sandbox account), with `secret`.
pub fn client(base: &str, secret: &str) -> Client {
    Client::new(ClientConfig {
        checkout_url: base.into(),
        api_url: base.into(),
        account_id: "T12345678".into(),
        client_id: "kiosk-demo".into(),
        client_secret: kioskpay::secret::Secret::new(secret),
        connect_timeout: Duration::from_secs(2),
        call_timeout: Duration::from_secs(5),
    })
}

/// A valid `POST /v1/sessions-profile` body but for what a test varies.
pub fn request(
    reference: &str,
    amount: u64,
    items_amount: u64,
    terminal: Option<&str>,
    profile: &str,
) -> SessionProfileRequest {
    SessionProfileRequest {
        profile_id: profile.into(),
        url: SessionUrl {
            return_url: "https://example.com/r".into(),
            callback_url: None,
        },
        order: Order {
            amount,
            currency: "NOK".into(),
            merchant_reference: reference.into(),
            merchant_reference_2: None,
            vat_amount: None,
            items: vec![OrderItem {
                id: "cart".into(),
                line_id: "1".into(),
                description: None,
                quantity: 1,
                amount: items_amount,
                vat_amount: None,
                vat: None,
            }],
            store: Some(Store {
                id: "oslo-center".into(),
                terminal_id: terminal.map(str::to_string),
                payout_destination_id: Some("seller-1".into()),
            }),
        },
    }
}
