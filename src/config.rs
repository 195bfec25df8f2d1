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
//! file itself can then be world-readable and shown in support tickets. The same rule holds for
//! the key shared with the merchant's POS for signed cart codes (`input.signing_key_file`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::dintero::client::ClientConfig;
use crate::dintero::Store;
pub use crate::display::{DisplayConfig, DisplayKind};
use crate::input::codes::{signed, Format};
pub use crate::input::{
    ButtonPin, CancelPin, GpioBackendKind, GpioConfig, InputConfig, InputKind, OutputPin, PinMap,
    Pull, PulsePin, VendPin,
};
use crate::money::{Currency, Language, Money};
use crate::payment::FlowConfig;
use crate::secret::Secret;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {error}; check the path given with --config")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error, in the message only: as a `source` it would be printed twice.
        error: std::io::Error,
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
    /// The key for signed cart codes is missing, empty, too short or too readable.
    #[error("input.signing_key_file {path}: {problem}")]
    SigningKey {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// Exit status of a configuration or usage error, for every command (the message names the key,
/// the value and what is expected).
pub const EXIT_CONFIG: u8 = 2;

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
    /// GPIO buttons, pulse-train input and handshake outputs (alone or beside a scanner).
    #[serde(default)]
    pub gpio: GpioConfig,
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

impl InputConfig {
    /// Reads `signing_key_file` into `signing_key`, refusing a file other users could read or a
    /// key shorter than [`signed::MIN_KEY_LEN`] bytes. Does nothing without the key.
    pub fn load_signing_key(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.signing_key_file else {
            return Ok(());
        };
        let err = |problem: String| ConfigError::SigningKey {
            path: path.clone(),
            problem,
        };
        let key = read_private(path, "the key shared with the POS").map_err(err)?;
        if key.expose().len() < signed::MIN_KEY_LEN {
            return Err(err(format!(
                "the key is {} bytes; use at least {} random bytes, e.g. \
                 openssl rand -base64 32 > {}",
                key.expose().len(),
                signed::MIN_KEY_LEN,
                path.display()
            )));
        }
        self.signing_key = Some(key);
        Ok(())
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
    /// How long after its approval a payment slip (a GS1 code with a cart reference) is refused
    /// as already paid when scanned again; 0 never refuses a slip (slips whose reference is
    /// printed on many). Signed cart codes are refused for as long as the journal remembers
    /// the approval, whatever this says.
    #[serde(default = "default_paid_cart_window_s")]
    pub paid_cart_window_s: u64,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        PaymentConfig {
            timeout_s: default_timeout_s(),
            poll_interval_ms: default_poll_ms(),
            pickup_timeout_s: default_pickup_s(),
            result_screen_s: default_result_s(),
            health_interval_s: default_health_s(),
            paid_cart_window_s: default_paid_cart_window_s(),
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
    /// `paid_cart_window_s` as a duration.
    pub fn paid_cart_window(&self) -> Duration {
        Duration::from_secs(self.paid_cart_window_s)
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
fn default_paid_cart_window_s() -> u64 {
    // A slip is for one cart: a day covers a customer who comes back with it, or scans it
    // again at another visit the same day.
    24 * 60 * 60
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
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::load_str(&text, path)
    }

    /// Whether the GPIO unit runs: `gpio.enabled`, or `input.kind = "gpio"`.
    pub fn gpio_enabled(&self) -> bool {
        self.gpio.enabled || self.input.kind == InputKind::Gpio
    }

    /// Parses and validates config text (`path` names it in errors), and reads the client secret.
    pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::parse(text, path)?;
        config.dintero.client_secret = Some(read_secret(&config.dintero.client_secret_file)?);
        config.input.load_signing_key()?;
        Ok(config)
    }

    /// Parses and validates config text; does not touch the secret file.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.gpio.apply_board(path)?;
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
        let input = &self.input;
        let formats = input.enabled_formats();
        if formats.is_empty() {
            return Err(invalid(
                "input.formats",
                "[]",
                "at least one of \"gs1\", \"digital_link\", \"ean13\", \"signed\", \"plain\"",
            ));
        }
        if formats.contains(&Format::Signed) && input.signing_key_file.is_none() {
            return Err(ConfigError::Invalid {
                key: "input.signing_key_file",
                value: "(not set)".into(),
                expected: "a file with the key shared with the POS, because input.formats \
                           lists \"signed\""
                    .into(),
            });
        }
        if !(5..=2_000).contains(&input.gap_ms) {
            return Err(invalid(
                "input.gap_ms",
                &input.gap_ms.to_string(),
                "5 to 2000 milliseconds, longer than the pause between two bytes of one code \
                 (20 to 100 is usual)",
            ));
        }
        if input.duplicate_window_ms > 60_000 {
            return Err(invalid(
                "input.duplicate_window_ms",
                &input.duplicate_window_ms.to_string(),
                "0 (off) to 60000 milliseconds",
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
        if let Some(template) = &disp.receipt_url {
            if let Err(expected) = crate::display::ReceiptUrl::parse(template) {
                return Err(invalid("display.receipt_url", template, &expected));
            }
        }
        if let Some(spi) = &disp.spi {
            if let Err(e) = spi.validate() {
                return Err(invalid("display.spi", "(table)", &e.to_string()));
            }
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
        if self.gpio_enabled() {
            self.gpio.validate(self.input.kind, self.kiosk.max_amount)?;
        }
        Ok(())
    }
}

/// Reads the client secret, refusing a file that other users could read.
fn read_secret(path: &Path) -> Result<Secret, ConfigError> {
    read_private(path, "the API client's secret").map_err(|problem| ConfigError::Secret {
        path: path.to_path_buf(),
        problem,
    })
}

/// The Dintero client's settings are the `[dintero]` section's; defined here so that the client
/// does not depend on the config file's layout.
impl ClientConfig {
    /// Takes the `[dintero]` section. The secret must already have been read
    /// ([`crate::config::Config::load`] does that).
    pub fn from_config(c: &DinteroConfig) -> Result<ClientConfig, ConfigError> {
        let client_secret = c.client_secret.clone().ok_or_else(|| ConfigError::Secret {
            path: c.client_secret_file.clone(),
            problem: "the secret has not been read; load the config with Config::load".into(),
        })?;
        Ok(ClientConfig {
            checkout_url: c.checkout_url.clone(),
            api_url: c.api_url.clone(),
            account_id: c.account_id.clone(),
            client_id: c.client_id.clone(),
            client_secret,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            call_timeout: Duration::from_millis(c.call_timeout_ms),
        })
    }
}

/// The payment flow's settings, taken from the composed config; defined here so that the flow
/// does not depend on the config file's layout.
impl FlowConfig {
    /// Takes the flow's settings from a validated config.
    pub fn from_config(config: &Config) -> FlowConfig {
        FlowConfig {
            kiosk_id: config.kiosk.id.clone(),
            currency: config.currency(),
            max_amount: config.max_amount(),
            profile_id: config.dintero.profile_id.clone(),
            return_url: config.dintero.return_url.clone(),
            vat_percent: config.dintero.vat_percent,
            store: Store {
                id: config.store.id.clone(),
                terminal_id: Some(config.store.terminal_id.clone()),
                payout_destination_id: Some(config.store.payout_destination_id.clone()),
            },
            timeout: config.payment.timeout(),
            poll_interval: config.payment.poll_interval(),
            pickup_timeout: config.payment.pickup_timeout(),
            result_screen: config.payment.result_screen(),
            health_interval: config.payment.health_interval(),
            keep_final: config.state.keep_final,
            lookup_confirm_delay: Duration::from_millis(config.dintero.call_timeout_ms)
                + config.payment.poll_interval(),
            paid_cart_window: config.payment.paid_cart_window(),
        }
    }
}

/// Reads a secret file (`what` names its content in the advice), refusing one that other users
/// could read or that is empty; the error says what is wrong and how to fix it.
fn read_private(path: &Path, what: &str) -> Result<Secret, String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::PermissionsExt;
    // Checked and read through one handle: the file judged is the file read.
    let mut file = std::fs::File::open(path)
        .map_err(|e| format!("{e}; create it with {what} and chmod 600"))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:03o} lets other users read the secret; run: chmod 600 {}",
            path.display()
        ));
    }
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        // As root, a file owned by the service user is the normal case (`sudo kioskpay check`):
        // the advice is then to check as that user, not to take the file away from it.
        let fix = if me == 0 {
            format!(
                "if uid {} is the service user, run this as that user (sudo -u kioskpay …); \
                 otherwise chown it to the service user",
                meta.uid()
            )
        } else {
            format!("run: chown {me} {}", path.display())
        };
        return Err(format!(
            "owned by uid {}, not by the user kioskpay runs as (uid {me}) or root: that user can \
             rewrite or swap the secret; {fix}",
            meta.uid()
        ));
    }
    secret_dirs_are_safe(path, me)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("the file is empty; write {what} into it"));
    }
    Ok(Secret::new(secret))
}

/// Refuses a secret reached through a directory another user could write to: whoever can write
/// a directory on the path can replace the file (or a directory under it) with their own. A
/// directory with the sticky bit (`/tmp`) is safe, since there only a file's owner may rename or
/// delete it, and the file's owner is checked separately.
fn secret_dirs_are_safe(path: &Path, me: u32) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // A symbolic link on the way is as good as a directory its owner can write.
    for step in path.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        let Ok(meta) = std::fs::symlink_metadata(step) else {
            continue;
        };
        if meta.file_type().is_symlink() && meta.uid() != me && meta.uid() != 0 {
            return Err(format!(
                "{} is a symbolic link owned by uid {}, who can point it at another file; use \
                 the real path, or a link owned by root or by uid {me}",
                step.display(),
                meta.uid()
            ));
        }
    }
    let real = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mode = meta.permissions().mode();
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            return Err(format!(
                "directory {} has mode {:03o}: other users can replace the secret in it; run: \
                 chmod go-w {} (or move the secret to a directory only root and kioskpay can write)",
                dir.display(),
                mode & 0o777,
                dir.display()
            ));
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(format!(
                "directory {} is owned by uid {}, who can replace the secret in it; keep the \
                 secret in a directory owned by root or by uid {me} (e.g. /etc/kioskpay)",
                dir.display(),
                meta.uid()
            ));
        }
    }
    Ok(())
}

impl GpioConfig {
    /// Reads `board` (if set) and fills every pin key `[gpio]` leaves unset from it.
    fn apply_board(&mut self, config_path: &Path) -> Result<(), ConfigError> {
        let Some(board) = &self.board else {
            return Ok(());
        };
        let file = match config_path.parent() {
            Some(dir) if board.is_relative() => dir.join(board),
            _ => board.clone(),
        };
        let text = std::fs::read_to_string(&file).map_err(|e| ConfigError::Invalid {
            key: "gpio.board",
            value: format!("{:?}", board.display().to_string()),
            expected: format!(
                "a readable pin map file such as /usr/share/kioskpay/pins/display-hat-mini.toml \
                 (reading {} failed: {e})",
                file.display()
            ),
        })?;
        let map: PinMap = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: file.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        self.buttons = self.buttons.take().or(map.buttons);
        self.cancel = self.cancel.take().or(map.cancel);
        self.pulse = self.pulse.take().or(map.pulse);
        self.busy = self.busy.take().or(map.busy);
        self.vend = self.vend.take().or(map.vend);
        Ok(())
    }

    fn validate(&self, kind: InputKind, max_amount: u64) -> Result<(), ConfigError> {
        let invalid = |key, value: String, expected: &str| ConfigError::Invalid {
            key,
            value,
            expected: expected.to_string(),
        };
        let buttons = self.buttons.as_deref().unwrap_or_default();
        if kind == InputKind::Gpio && buttons.is_empty() && self.pulse.is_none() {
            return Err(invalid(
                "input.kind",
                "\"gpio\"".into(),
                "[[gpio.buttons]] or [gpio.pulse] (or a gpio.board file with them): with \
                 input.kind = \"gpio\" nothing else produces carts",
            ));
        }
        let mut pins: Vec<(u32, &str)> = Vec::new();
        for b in buttons {
            pins.push((b.pin, "gpio.buttons"));
            if b.amount == 0 || b.amount > max_amount {
                return Err(invalid(
                    "gpio.buttons.amount",
                    format!("{} (pin {})", b.amount, b.pin),
                    &format!(
                        "a positive amount in minor units up to kiosk.max_amount ({max_amount})"
                    ),
                ));
            }
            check_debounce("gpio.buttons.debounce_ms", b.debounce_ms)?;
        }
        if let Some(c) = &self.cancel {
            pins.push((c.pin, "gpio.cancel"));
            check_debounce("gpio.cancel.debounce_ms", c.debounce_ms)?;
        }
        if let Some(p) = &self.pulse {
            pins.push((p.pin, "gpio.pulse"));
            if p.unit == 0 || p.unit > max_amount {
                return Err(invalid(
                    "gpio.pulse.unit",
                    p.unit.to_string(),
                    "the value of one pulse in minor units, positive and at most kiosk.max_amount",
                ));
            }
            if !(1..=1000).contains(&p.min_width_ms) {
                return Err(invalid(
                    "gpio.pulse.min_width_ms",
                    p.min_width_ms.to_string(),
                    "1 to 1000 milliseconds (the shortest real pulse is longer)",
                ));
            }
            if p.max_width_ms <= p.min_width_ms || p.max_width_ms > 60_000 {
                return Err(invalid(
                    "gpio.pulse.max_width_ms",
                    p.max_width_ms.to_string(),
                    "more than gpio.pulse.min_width_ms and at most 60000 milliseconds",
                ));
            }
            if p.gap_ms <= p.min_width_ms || p.gap_ms > 60_000 {
                return Err(invalid(
                    "gpio.pulse.gap_ms",
                    p.gap_ms.to_string(),
                    "more than gpio.pulse.min_width_ms (and longer than any pause inside a \
                     train), at most 60000 milliseconds",
                ));
            }
            let most = u64::from(p.max_pulses).checked_mul(p.unit);
            if p.max_pulses == 0 || most.is_none() {
                return Err(invalid(
                    "gpio.pulse.max_pulses",
                    p.max_pulses.to_string(),
                    "a positive number of pulses whose total fits in minor units",
                ));
            }
        }
        if let Some(b) = &self.busy {
            pins.push((b.pin, "gpio.busy"));
        }
        if let Some(v) = &self.vend {
            pins.push((v.pin, "gpio.vend"));
            if !(10..=10_000).contains(&v.pulse_ms) {
                return Err(invalid(
                    "gpio.vend.pulse_ms",
                    v.pulse_ms.to_string(),
                    "10 to 10000 milliseconds",
                ));
            }
        }
        if pins.is_empty() {
            return Err(invalid(
                "gpio.enabled",
                "true".into(),
                "at least one of gpio.buttons, gpio.cancel, gpio.pulse, gpio.busy, gpio.vend \
                 (directly or through gpio.board)",
            ));
        }
        for (i, (pin, key)) in pins.iter().enumerate() {
            if let Some((_, other)) = pins[..i].iter().find(|(p, _)| p == pin) {
                return Err(invalid(
                    "gpio.pin",
                    pin.to_string(),
                    &format!("each line used once; {other} and {key} both use it"),
                ));
            }
            if self.backend == GpioBackendKind::Rppal && *pin > 53 {
                return Err(invalid(
                    "gpio.pin",
                    pin.to_string(),
                    "a BCM GPIO number from 0 to 53 with backend = \"rppal\" (27 on the header)",
                ));
            }
        }
        if self.backend == GpioBackendKind::Cdev && !self.chip_path().is_absolute() {
            return Err(invalid(
                "gpio.chip",
                format!("{:?}", self.chip_path().display().to_string()),
                "an absolute path such as /dev/gpiochip0",
            ));
        }
        Ok(())
    }
}

fn check_debounce(key: &'static str, ms: u64) -> Result<(), ConfigError> {
    if (1..=1000).contains(&ms) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key,
        value: ms.to_string(),
        expected: "1 to 1000 milliseconds (5 to 50 suits push buttons)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::scanner::{Framing, Terminator};
    use crate::input::serial::{FlowControl, Parity};

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
        assert_eq!(c.display.png_keep, 200);
        assert_eq!(c.payment.paid_cart_window_s, 86400);
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

    #[test]
    fn a_private_secret_owned_by_another_user_or_in_a_writable_directory_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open_dir = dir.path().join("shared");
        std::fs::create_dir(&open_dir).unwrap();
        let secret = open_dir.join("secret");
        std::fs::write(&secret, "demo-secret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = dir.path().join("k.toml");
        std::fs::write(
            &cfg,
            MINIMAL.replace("/nonexistent", secret.to_str().unwrap()),
        )
        .unwrap();
        Config::load(&cfg).unwrap();

        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let msg = Config::load(&cfg).unwrap_err().to_string();
        assert!(
            msg.contains("has mode 777") && msg.contains("chmod go-w"),
            "{msg}"
        );
        assert!(!msg.contains("demo-secret"));
        // Sticky, like /tmp: only the file's owner may rename or delete it there.
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        Config::load(&cfg).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o700)).unwrap();

        // Only root can give a file away; elsewhere the mode and directory checks above stand.
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&secret, Some(4242), None).unwrap();
            let msg = Config::load(&cfg).unwrap_err().to_string();
            assert!(
                msg.contains("owned by uid 4242") && msg.contains("sudo -u kioskpay"),
                "{msg}"
            );
            std::os::unix::fs::chown(&secret, Some(0), None).unwrap();
            std::os::unix::fs::chown(&open_dir, Some(4242), None).unwrap();
            let msg = Config::load(&cfg).unwrap_err().to_string();
            assert!(msg.contains("is owned by uid 4242"), "{msg}");
            std::os::unix::fs::chown(&open_dir, Some(0), None).unwrap();
            Config::load(&cfg).unwrap();

            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&secret, &link).unwrap();
            std::os::unix::fs::lchown(&link, Some(4242), None).unwrap();
            std::fs::write(
                &cfg,
                MINIMAL.replace("/nonexistent", link.to_str().unwrap()),
            )
            .unwrap();
            let msg = Config::load(&cfg).unwrap_err().to_string();
            assert!(
                msg.contains("is a symbolic link owned by uid 4242"),
                "{msg}"
            );
        }
    }

    #[test]
    fn a_missing_config_file_names_the_os_error_once() {
        let err = Config::load(Path::new("/nonexistent/kioskpay.toml")).unwrap_err();
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(chain.matches("os error 2").count(), 1, "{chain}");
        assert!(chain.contains("/nonexistent/kioskpay.toml"), "{chain}");
    }

    #[test]
    fn input_defaults_suit_a_production_kiosk() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.input.enabled_formats(),
            vec![Format::Gs1, Format::DigitalLink]
        );
        assert_eq!(c.input.framing, Framing::Line);
        assert_eq!(c.input.terminator, Terminator::Any);
        assert_eq!(c.input.parity, Parity::None);
        assert_eq!(c.input.flow_control, FlowControl::None);
        assert_eq!(c.input.duplicate_window(), Duration::from_secs(1));
        let with_key = parse(&format!(
            "{MINIMAL}[input]\nsigning_key_file = \"/etc/kioskpay/signing_key\"\n"
        ))
        .unwrap();
        assert_eq!(
            with_key.input.enabled_formats(),
            vec![Format::Gs1, Format::DigitalLink, Format::Signed]
        );
        let all = parse(&format!(
            "{MINIMAL}[input]\nformats = [\"plain\", \"ean13\"]\nframing = \"stx_etx\"\nterminator = \"crlf\"\nparity = \"odd\"\nflow_control = \"hardware\"\n"
        ))
        .unwrap();
        assert_eq!(
            all.input.enabled_formats(),
            vec![Format::Plain, Format::Ean13Price]
        );
        assert_eq!(all.input.framing, Framing::StxEtx);
        assert_eq!(all.input.terminator, Terminator::Crlf);
        assert_eq!(all.input.parity, Parity::Odd);
        assert_eq!(all.input.flow_control, FlowControl::Hardware);
    }

    #[test]
    fn input_errors_name_key_value_and_expectation() {
        let cases = [
            (
                "formats = []",
                "input.formats = \"[]\": expected at least one of",
            ),
            (
                "formats = [\"signed\"]",
                "input.signing_key_file = (not set): expected a file with the key",
            ),
            (
                "formats = [\"qr\"]",
                "unknown variant `qr`, expected one of",
            ),
            ("parity = \"mark\"", "unknown variant `mark`"),
            ("flow_control = \"rts\"", "unknown variant `rts`"),
            ("terminator = \"nul\"", "unknown variant `nul`"),
            ("framing = \"stx\"", "unknown variant `stx`"),
            (
                "gap_ms = 0",
                "input.gap_ms = \"0\": expected 5 to 2000 milliseconds",
            ),
            (
                "duplicate_window_ms = 600000",
                "input.duplicate_window_ms = \"600000\": expected 0 (off) to 60000",
            ),
            (
                "[[input.ean13_rules]]\nkind = \"price\"\nprefix = 31\ndecimals = 2",
                "prefix 31 is not an in-store prefix",
            ),
        ];
        for (input, want) in cases {
            let msg = parse(&format!("{MINIMAL}[input]\n{input}\n"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(want), "{input:?}: {msg}");
        }
    }

    #[test]
    fn signing_key_file_must_be_private_and_long_enough() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("signing_key");
        let mut input = InputConfig {
            signing_key_file: Some(key.clone()),
            ..InputConfig::default()
        };
        let msg = input.load_signing_key().unwrap_err().to_string();
        assert!(
            msg.starts_with("input.signing_key_file") && msg.contains("chmod 600"),
            "{msg}"
        );
        std::fs::write(&key, "pos-shared-key-for-tests-0123456789\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let msg = input.load_signing_key().unwrap_err().to_string();
        assert!(msg.contains("mode 640"), "{msg}");
        assert!(!msg.contains("pos-shared-key"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        input.load_signing_key().unwrap();
        assert_eq!(
            input.signing_key.as_ref().map(Secret::expose),
            Some("pos-shared-key-for-tests-0123456789")
        );
        assert!(!format!("{input:?}").contains("pos-shared-key"));
        std::fs::write(&key, "short\n").unwrap();
        let msg = input.load_signing_key().unwrap_err().to_string();
        assert!(
            msg.contains("5 bytes; use at least 16 random bytes"),
            "{msg}"
        );
        assert!(!msg.contains("short"));
    }
}
