//! The kiosk's configuration: one TOML file, typed, validated before anything runs.
//!
//! Every key an installer must decide (who the kiosk is, which Dintero account and terminal) is
//! required; everything else has a default that is right for a Raspberry Pi kiosk in Norway, so a
//! short file runs. Unknown keys are errors, not silently ignored: a misspelt `timeout_s` must
//! not leave a kiosk on a default nobody chose.
//!
//! Errors name the key, the bad value and what is expected, so a technician on a serial
//! console can fix the file without reading code. The Dintero client secret lives in its own
//! file (`dintero.client_secret_file`) which must not be readable by group or others: the config
//! file itself can then be world-readable and shown in support tickets.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::money::{Currency, Language, Money};
use crate::secret::Secret;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}; check the path given with --config")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for kioskpay (syntax, unknown key, wrong type, missing key).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, which quotes the line, the key and what was expected.
        message: String,
    },
    /// A key has a value kioskpay cannot use.
    #[error("config key {key} = {value}: expected {expected}")]
    Invalid {
        /// Dotted key, e.g. `kiosk.language`.
        key: &'static str,
        /// The value as written (never a secret).
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// The client secret file is missing, empty or too readable.
    #[error("dintero.client_secret_file {path}: {problem}")]
    Secret {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this kiosk is and what it charges.
    pub kiosk: KioskConfig,
    /// The Dintero account and API client.
    pub dintero: DinteroConfig,
    /// The store and terminal payments go to.
    pub store: StoreConfig,
    /// Where carts come from.
    #[serde(default)]
    pub input: InputConfig,
    /// Where the customer screen goes.
    #[serde(default)]
    pub display: DisplayConfig,
    /// Payment timing.
    #[serde(default)]
    pub payment: PaymentConfig,
    /// Where the journal lives.
    #[serde(default)]
    pub state: StateConfig,
    /// Fleet metrics (off unless `textfile` is set).
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[metrics]`: a Prometheus text file for node_exporter's textfile collector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// The `.prom` file, e.g. `/var/lib/node_exporter/textfile_collector/kioskpay.prom`;
    /// unset means no metrics are written.
    #[serde(default)]
    pub textfile: Option<PathBuf>,
    /// How often the file is rewritten (it is also rewritten after each payment); 0 means the
    /// default of 15 s.
    #[serde(default)]
    pub interval_s: u64,
}

impl MetricsConfig {
    /// `interval_s` as a duration, 15 s when unset.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(if self.interval_s == 0 {
            15
        } else {
            self.interval_s
        })
    }
}

/// `[kiosk]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskConfig {
    /// Goes into every `merchant_reference`; letters, digits and `-` only.
    pub id: String,
    /// The currency carts are charged in.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// The customer's language: `nb` or `en`.
    #[serde(default)]
    pub language: Language,
    /// Largest cart in minor units; larger carts are refused before any API call.
    #[serde(default = "default_max_amount")]
    pub max_amount: u64,
}

/// `[dintero]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DinteroConfig {
    /// `T` + 8 digits (sandbox) or `P` + 8 digits (production).
    pub account_id: String,
    /// The API client's id.
    pub client_id: String,
    /// File holding the client secret; must not be group- or world-readable.
    pub client_secret_file: PathBuf,
    /// A payment profile whose only method is Seitatech in-person.
    pub profile_id: String,
    /// Base URL of the checkout API.
    #[serde(default = "default_checkout_url")]
    pub checkout_url: String,
    /// Base URL of the management API (auth, terminals).
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// `url.return_url` of sessions: required by the schema, unused by a terminal.
    #[serde(default = "default_return_url")]
    pub return_url: String,
    /// VAT rate in percent put on the order line.
    #[serde(default = "default_vat")]
    pub vat_percent: u32,
    /// TCP connect timeout.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Whole-call timeout (ureq has none by default; an untimed call could hang shutdown).
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// The secret, read from `client_secret_file` by [`Config::load`].
    #[serde(skip)]
    pub client_secret: Option<Secret>,
}

impl fmt::Debug for DinteroConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DinteroConfig")
            .field("account_id", &self.account_id)
            .field("client_id", &self.client_id)
            .field("client_secret_file", &self.client_secret_file)
            .field("profile_id", &self.profile_id)
            .field("checkout_url", &self.checkout_url)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

/// `[store]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The merchant's store id.
    pub id: String,
    /// The paired terminal, `<aid>-T<4 digits>`.
    pub terminal_id: String,
    /// The payout destination linked to the store.
    pub payout_destination_id: String,
}

/// Which input unit feeds carts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// A barcode scanner on a serial device.
    #[default]
    Serial,
    /// Lines on standard input.
    Stdin,
}

/// `[input]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// `serial` or `stdin`.
    #[serde(default)]
    pub kind: InputKind,
    /// The serial device.
    #[serde(default = "default_device")]
    pub device: PathBuf,
    /// Baud rate.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Longest line accepted; longer ones are dropped (noise on the line).
    #[serde(default = "default_max_line")]
    pub max_line: usize,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            kind: InputKind::default(),
            device: default_device(),
            baud: default_baud(),
            max_line: default_max_line(),
        }
    }
}

/// Which display backend draws the customer screen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisplayKind {
    /// Numbered PNG files in `png_dir`.
    #[default]
    Png,
    /// A text rendering on the terminal (the demo).
    Terminal,
    /// No display.
    None,
}

/// `[display]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayConfig {
    /// `png`, `terminal` or `none`.
    #[serde(default)]
    pub kind: DisplayKind,
    /// Where the `png` backend writes frames.
    #[serde(default = "default_png_dir")]
    pub png_dir: PathBuf,
    /// Panel width in pixels.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Panel height in pixels.
    #[serde(default = "default_height")]
    pub height: u32,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            kind: DisplayKind::default(),
            png_dir: default_png_dir(),
            width: default_width(),
            height: default_height(),
        }
    }
}

/// `[payment]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentConfig {
    /// After this long the kiosk cancels, re-reads, and reports what really happened.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// How often a running payment is polled.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// A terminal that has not picked a session up after this long is offline.
    #[serde(default = "default_pickup_s")]
    pub pickup_timeout_s: u64,
    /// How long a result screen stays before the idle screen.
    #[serde(default = "default_result_s")]
    pub result_screen_s: u64,
    /// How often the health gate checks the terminal and the token while idle.
    #[serde(default = "default_health_s")]
    pub health_interval_s: u64,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        PaymentConfig {
            timeout_s: default_timeout_s(),
            poll_interval_ms: default_poll_ms(),
            pickup_timeout_s: default_pickup_s(),
            result_screen_s: default_result_s(),
            health_interval_s: default_health_s(),
        }
    }
}

impl PaymentConfig {
    /// `timeout_s` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s)
    }
    /// `poll_interval_ms` as a duration.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
    /// `pickup_timeout_s` as a duration.
    pub fn pickup_timeout(&self) -> Duration {
        Duration::from_secs(self.pickup_timeout_s)
    }
    /// `result_screen_s` as a duration.
    pub fn result_screen(&self) -> Duration {
        Duration::from_secs(self.result_screen_s)
    }
    /// `health_interval_s` as a duration.
    pub fn health_interval(&self) -> Duration {
        Duration::from_secs(self.health_interval_s)
    }
}

/// `[state]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// Directory of the journal.
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
    /// How many finished payments compaction keeps in the journal (unfinished ones are always
    /// kept). Enough for a day's support questions without letting replay grow without bound.
    #[serde(default = "default_keep_final")]
    pub keep_final: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: default_state_dir(),
            keep_final: default_keep_final(),
        }
    }
}

fn default_currency() -> String {
    "NOK".into()
}
fn default_max_amount() -> u64 {
    1_000_000
}
fn default_checkout_url() -> String {
    "https://checkout.dintero.com".into()
}
fn default_api_url() -> String {
    "https://api.dintero.com".into()
}
fn default_return_url() -> String {
    "https://kioskpay.invalid/return".into()
}
fn default_vat() -> u32 {
    25
}
fn default_connect_timeout_ms() -> u64 {
    3_000
}
fn default_call_timeout_ms() -> u64 {
    15_000
}
fn default_device() -> PathBuf {
    "/dev/ttyACM0".into()
}
fn default_baud() -> u32 {
    9600
}
fn default_max_line() -> usize {
    512
}
fn default_png_dir() -> PathBuf {
    "/var/lib/kioskpay/frames".into()
}
fn default_width() -> u32 {
    240
}
fn default_height() -> u32 {
    320
}
fn default_timeout_s() -> u64 {
    120
}
fn default_poll_ms() -> u64 {
    500
}
fn default_pickup_s() -> u64 {
    10
}
fn default_result_s() -> u64 {
    5
}
fn default_health_s() -> u64 {
    60
}
fn default_keep_final() -> usize {
    2000
}
fn default_state_dir() -> PathBuf {
    "/var/lib/kioskpay".into()
}

impl Config {
    /// Reads, parses and validates a config file, and reads the client secret.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::load_str(&text, path)
    }

    /// Parses and validates config text (`path` names it in errors), and reads the client secret.
    pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::parse(text, path)?;
        config.dintero.client_secret = Some(read_secret(&config.dintero.client_secret_file)?);
        Ok(config)
    }

    /// Parses and validates config text; does not touch the secret file.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The kiosk's currency (validated by [`Config::parse`]).
    pub fn currency(&self) -> Currency {
        Currency::from_code(&self.kiosk.currency).unwrap_or(Currency::NOK)
    }

    /// `kiosk.max_amount` in the kiosk's currency.
    pub fn max_amount(&self) -> Money {
        Money::new(self.kiosk.max_amount, self.currency())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, value: &str, expected: &str| ConfigError::Invalid {
            key,
            value: format!("{value:?}"),
            expected: expected.to_string(),
        };
        let k = &self.kiosk;
        if k.id.is_empty()
            || k.id.len() > 32
            || !k.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid(
                "kiosk.id",
                &k.id,
                "1 to 32 letters, digits or '-' (it goes into every merchant_reference)",
            ));
        }
        if Currency::from_code(&k.currency).is_none() {
            return Err(invalid(
                "kiosk.currency",
                &k.currency,
                &format!("one of {}", Currency::known_codes().join(", ")),
            ));
        }
        if k.max_amount == 0 {
            return Err(invalid(
                "kiosk.max_amount",
                "0",
                "a positive amount in minor units (1000000 = 10 000.00)",
            ));
        }
        let d = &self.dintero;
        let aid_ok = d.account_id.len() == 9
            && matches!(d.account_id.as_bytes()[0], b'T' | b'P')
            && d.account_id[1..].bytes().all(|b| b.is_ascii_digit());
        if !aid_ok {
            return Err(invalid(
                "dintero.account_id",
                &d.account_id,
                "T followed by 8 digits (sandbox) or P followed by 8 digits (production)",
            ));
        }
        if d.client_id.is_empty() {
            return Err(invalid(
                "dintero.client_id",
                "",
                "the API client's id from Dintero Backoffice",
            ));
        }
        if d.profile_id.is_empty() {
            return Err(invalid(
                "dintero.profile_id",
                "",
                "a payment profile id whose only method is Seitatech in-person",
            ));
        }
        for (key, url) in [
            ("dintero.checkout_url", &d.checkout_url),
            ("dintero.api_url", &d.api_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.ends_with('/') {
                return Err(invalid(
                    key,
                    url,
                    "a base URL such as https://checkout.dintero.com (no trailing '/')",
                ));
            }
        }
        if d.connect_timeout_ms == 0 || d.call_timeout_ms == 0 {
            return Err(invalid(
                "dintero.call_timeout_ms",
                "0",
                "a positive number of milliseconds",
            ));
        }
        if d.vat_percent > 100 {
            return Err(invalid(
                "dintero.vat_percent",
                &d.vat_percent.to_string(),
                "a VAT rate from 0 to 100",
            ));
        }
        let s = &self.store;
        let tid_ok = s.terminal_id.len() == 15
            && s.terminal_id.starts_with(&d.account_id)
            && s.terminal_id[9..11] == *"-T"
            && s.terminal_id[11..].bytes().all(|b| b.is_ascii_digit());
        if !tid_ok {
            return Err(invalid(
                "store.terminal_id",
                &s.terminal_id,
                &format!(
                    "the terminal id from registration, {}-T followed by 4 digits",
                    d.account_id
                ),
            ));
        }
        if s.id.is_empty() {
            return Err(invalid("store.id", "", "the merchant's store id"));
        }
        if s.payout_destination_id.is_empty() {
            return Err(invalid(
                "store.payout_destination_id",
                "",
                "the payout destination linked to the store",
            ));
        }
        if !(1200..=4_000_000).contains(&self.input.baud) {
            return Err(invalid(
                "input.baud",
                &self.input.baud.to_string(),
                "a baud rate such as 9600 or 115200",
            ));
        }
        if !(16..=65536).contains(&self.input.max_line) {
            return Err(invalid(
                "input.max_line",
                &self.input.max_line.to_string(),
                "16 to 65536 bytes",
            ));
        }
        let disp = &self.display;
        if !(64..=4096).contains(&disp.width) || !(64..=4096).contains(&disp.height) {
            return Err(invalid(
                "display.width",
                &format!("{}x{}", disp.width, disp.height),
                "a panel size from 64 to 4096 pixels each way (240x320, 320x240, 480x320)",
            ));
        }
        let p = &self.payment;
        if !(10..=3600).contains(&p.timeout_s) {
            return Err(invalid(
                "payment.timeout_s",
                &p.timeout_s.to_string(),
                "10 to 3600 seconds",
            ));
        }
        if !(50..=10_000).contains(&p.poll_interval_ms) {
            return Err(invalid(
                "payment.poll_interval_ms",
                &p.poll_interval_ms.to_string(),
                "50 to 10000 milliseconds",
            ));
        }
        if p.pickup_timeout_s == 0 || p.pickup_timeout_s >= p.timeout_s {
            return Err(invalid(
                "payment.pickup_timeout_s",
                &p.pickup_timeout_s.to_string(),
                "a positive number of seconds below payment.timeout_s",
            ));
        }
        if p.health_interval_s == 0 {
            return Err(invalid(
                "payment.health_interval_s",
                "0",
                "a positive number of seconds",
            ));
        }
        Ok(())
    }
}

/// Reads the client secret, refusing a file that other users could read.
fn read_secret(path: &Path) -> Result<Secret, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |problem: String| ConfigError::Secret {
        path: path.to_path_buf(),
        problem,
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        err(format!(
            "{e}; create it with the API client's secret and chmod 600"
        ))
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "mode {mode:03o} lets other users read the secret; run: chmod 600 {}",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(err(
            "the file is empty; write the API client's secret into it".into(),
        ));
    }
    Ok(Secret::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[kiosk]
id = "kiosk-1"
[dintero]
account_id = "T12345678"
client_id = "kiosk-demo"
client_secret_file = "/nonexistent"
profile_id = "T12345678.kiosk-in-person"
[store]
id = "oslo-center"
terminal_id = "T12345678-T0001"
payout_destination_id = "seller-1"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.currency(), Currency::NOK);
        assert_eq!(c.kiosk.language, Language::Nb);
        assert_eq!(c.payment.timeout_s, 120);
        assert_eq!(c.input.kind, InputKind::Serial);
        assert_eq!(c.display.kind, DisplayKind::Png);
        assert_eq!(c.dintero.checkout_url, "https://checkout.dintero.com");
    }

    #[test]
    fn errors_name_key_value_and_expectation() {
        let cases = [
            (
                "id = \"kiosk-1\"",
                "id = \"kiosk 1\"",
                "kiosk.id = \"kiosk 1\": expected 1 to 32",
            ),
            (
                "[kiosk]",
                "[kiosk]\ncurrency = \"XYZ\"",
                "kiosk.currency = \"XYZ\": expected one of NOK",
            ),
            (
                "account_id = \"T12345678\"",
                "account_id = \"X1\"",
                "dintero.account_id = \"X1\": expected T followed by 8 digits",
            ),
            (
                "terminal_id = \"T12345678-T0001\"",
                "terminal_id = \"T0001\"",
                "store.terminal_id = \"T0001\"",
            ),
            (
                "[kiosk]",
                "[kiosk]\nlanguage = \"de\"",
                "unknown variant `de`, expected `nb` or `en`",
            ),
            ("[kiosk]", "[kiosk]\nmax_amount = \"x\"", "max_amount"),
            ("[kiosk]", "[kiosk]\ntimeout = 5", "unknown field `timeout`"),
        ];
        for (from, to, want) in cases {
            let text = MINIMAL.replacen(from, to, 1);
            let msg = parse(&text).unwrap_err().to_string();
            assert!(msg.contains(want), "{to:?}: {msg}");
        }
        let msg = parse(&format!("{MINIMAL}\n[payment]\ntimeout_s = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("payment.timeout_s = \"5\": expected 10 to 3600 seconds"),
            "{msg}"
        );
        let msg = parse(&MINIMAL.replace("[store]", "[storage]"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("storage"), "{msg}");
    }

    #[test]
    fn secret_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "demo-secret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = dir.path().join("k.toml");
        std::fs::write(
            &cfg,
            MINIMAL.replace("/nonexistent", secret.to_str().unwrap()),
        )
        .unwrap();
        let msg = Config::load(&cfg).unwrap_err().to_string();
        assert!(
            msg.contains("mode 644") && msg.contains("chmod 600"),
            "{msg}"
        );
        assert!(!msg.contains("demo-secret"));
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::load(&cfg).unwrap();
        assert_eq!(
            c.dintero.client_secret.as_ref().unwrap().expose(),
            "demo-secret"
        );
        assert!(!format!("{c:?}").contains("demo-secret"));
    }
}
