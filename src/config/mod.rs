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
//!
//! Parse, don't validate: the file is read into [`file`]'s plain sections, and each becomes a
//! typed section here ([`KioskConfig`] holds a [`Currency`] and [`Money`], [`StoreConfig`] a
//! [`TerminalId`], [`PaymentConfig`] [`Duration`]s) or is checked by the subsystem that owns it
//! ([`InputConfig::check`], [`DisplayConfig::check`], [`GpioConfig::check`]). A [`Config`] can
//! only be made by [`Config::parse`], so code that holds one never checks it again and never
//! falls back to a default nobody chose.

mod file;
pub mod keys;
pub mod rollback;
mod secrets;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::board::pins::PinMapError;
pub use crate::callback::{CallbackConfig, PublicUrl};
use crate::dintero::client::ClientConfig;
use crate::dintero::{AccountId, TerminalId};
pub use crate::display::{DisplayConfig, DisplayKind};
pub use crate::gpio::{
    ButtonPin, CancelPin, GpioBackendKind, GpioConfig, OutputPin, PinMap, Pull, PulsePin, VendPin,
};
pub use crate::input::{InputConfig, InputKind};
use crate::money::{Currency, Language, Money};
use crate::payment::poll::Polling;
use crate::payment::FlowConfig;
use crate::secret::Secret;
use crate::setting::Invalid;

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
    /// The callback signature secret file is missing, empty or too readable.
    #[error("callback.signature_secret_file {path}: {problem}")]
    CallbackSecret {
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

/// Where the packages install the config, and where commands look without `--config`.
pub const DEFAULT_FILE: &str = "/etc/kioskpay/kioskpay.toml";

/// Exit status of a configuration or usage error, for every command (the message names the key,
/// the value and what is expected).
pub const EXIT_CONFIG: u8 = 2;

impl From<Invalid> for ConfigError {
    fn from(e: Invalid) -> Self {
        ConfigError::Invalid {
            key: e.key,
            value: e.value,
            expected: e.expected,
        }
    }
}

/// The whole configuration, every value parsed. Made only by [`Config::parse`] (and
/// [`Config::load`], which also reads the secrets).
#[derive(Clone, Debug)]
pub struct Config {
    /// Who this kiosk is and what it charges.
    pub kiosk: KioskConfig,
    /// The Dintero account and API client.
    pub dintero: DinteroConfig,
    /// The store and terminal payments go to.
    pub store: StoreConfig,
    /// Where carts come from.
    pub input: InputConfig,
    /// Where the customer screen goes.
    pub display: DisplayConfig,
    /// Payment timing.
    pub payment: PaymentConfig,
    /// Where the journal lives.
    pub state: StateConfig,
    /// GPIO buttons, pulse-train input and handshake outputs (alone or beside a scanner).
    pub gpio: GpioConfig,
    /// Fleet metrics (off unless `textfile` is set).
    pub metrics: MetricsConfig,
    /// The signed-callback listener; `None` (no `[callback]`): the kiosk only polls.
    pub callback: Option<CallbackConfig>,
}

/// `[kiosk]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KioskConfig {
    /// Goes into every `merchant_reference`.
    pub id: KioskId,
    /// The currency carts are charged in.
    pub currency: Currency,
    /// The customer's language.
    pub language: Language,
    /// Largest cart; larger carts are refused before any API call.
    pub max_amount: Money,
}

/// `kiosk.id`: 1 to 32 letters, digits or `-`, so that it can stand in a merchant reference
/// and a file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KioskId(String);

impl KioskId {
    /// Parses a kiosk id; the error says what a valid one looks like.
    pub fn parse(text: &str) -> Result<KioskId, String> {
        let ok = !text.is_empty()
            && text.len() <= 32
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok {
            Ok(KioskId(text.to_string()))
        } else {
            Err("1 to 32 letters, digits or '-' (it goes into every merchant_reference)".into())
        }
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KioskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A base URL of a Dintero API: `http://` or `https://`, no trailing `/`, so that paths can be
/// appended as they are written in the API reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Parses a base URL; the error says what a valid one looks like.
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        if (text.starts_with("https://") || text.starts_with("http://")) && !text.ends_with('/') {
            Ok(BaseUrl(text.to_string()))
        } else {
            Err("a base URL such as https://checkout.dintero.com (no trailing '/')".into())
        }
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[dintero]`
#[derive(Clone)]
pub struct DinteroConfig {
    /// The account, sandbox (`T…`) or production (`P…`).
    pub account_id: AccountId,
    /// The API client's id.
    pub client_id: String,
    /// File holding the client secret; must not be group- or world-readable.
    pub client_secret_file: PathBuf,
    /// A payment profile whose only method is Seitatech in-person.
    pub profile_id: String,
    /// Base URL of the checkout API.
    pub checkout_url: BaseUrl,
    /// Base URL of the management API (auth, terminals).
    pub api_url: BaseUrl,
    /// `url.return_url` of sessions: required by the schema, unused by a terminal.
    pub return_url: String,
    /// VAT rate in percent put on the order line, 0 to 100.
    pub vat_percent: u32,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Whole-call timeout (ureq has none by default; an untimed call could hang shutdown).
    pub call_timeout: Duration,
    /// The secret, read from `client_secret_file` by [`Config::load`].
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// The merchant's store id.
    pub id: String,
    /// The paired terminal, a terminal of `dintero.account_id`.
    pub terminal_id: TerminalId,
    /// The payout destination linked to the store.
    pub payout_destination_id: String,
}

/// `[payment]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentConfig {
    /// After this long the kiosk cancels, re-reads, and reports what really happened.
    pub timeout: Duration,
    /// How often a running payment is read.
    pub polling: Polling,
    /// A terminal that has not picked a session up after this long is offline; shorter than
    /// `timeout`.
    pub pickup_timeout: Duration,
    /// How long a result screen stays before the idle screen.
    pub result_screen: Duration,
    /// How often the health gate checks the terminal and the token while idle.
    pub health_interval: Duration,
    /// How long after its approval a payment slip is refused as already paid (zero: never).
    pub paid_cart_window: Duration,
}

/// `[state]`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
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

/// The state directory a one-shot command works in (`audit verify`, `console`): `state_dir` when
/// given, else the config file's `state.dir`, else the default `/var/lib/kioskpay`.
pub fn state_dir_of(
    state_dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<PathBuf, ConfigError> {
    match (state_dir, config) {
        (Some(dir), _) => Ok(dir),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read {
                path: path.clone(),
                error,
            })?;
            Ok(Config::parse(&text, &path)?.state.dir)
        }
        (None, None) => Ok(StateConfig::default().dir),
    }
}

fn default_keep_final() -> usize {
    2000
}
fn default_state_dir() -> PathBuf {
    "/var/lib/kioskpay".into()
}

/// `[metrics]`: a Prometheus text file for node_exporter's textfile collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The `.prom` file; `None`: no metrics are written.
    pub textfile: Option<PathBuf>,
    /// How often the file is rewritten (it is also rewritten after each payment).
    pub interval: Duration,
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

    /// Parses config text (`path` names it in errors), and reads the secrets.
    pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::parse(text, path)?;
        config.dintero.client_secret =
            Some(secrets::read_secret(&config.dintero.client_secret_file)?);
        config.input.load_signing_key()?;
        if let Some(callback) = &mut config.callback {
            callback.signature_secret = Some(secrets::read_callback_secret(
                &callback.signature_secret_file,
            )?);
        }
        Ok(config)
    }

    /// Parses config text; does not touch the secret files. The first value that cannot be
    /// used is the error, in the order of the file's sections.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut raw: file::File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        apply_pin_map(&mut raw.gpio, path)?;
        let kiosk = raw.kiosk.parse()?;
        let dintero = raw.dintero.parse()?;
        let store = raw.store.parse(&dintero.account_id)?;
        raw.input.check()?;
        raw.display.check()?;
        let payment = raw.payment.parse()?;
        let callback = raw.callback.parse()?;
        let config = Config {
            kiosk,
            dintero,
            store,
            input: raw.input,
            display: raw.display,
            payment,
            state: raw.state,
            gpio: raw.gpio,
            metrics: raw.metrics.parse(),
            callback,
        };
        if config.gpio_enabled() {
            config.gpio.check(
                config.input.kind == InputKind::Gpio,
                config.kiosk.max_amount.minor,
            )?;
        }
        Ok(config)
    }

    /// The kiosk's currency.
    pub fn currency(&self) -> Currency {
        self.kiosk.currency
    }

    /// `kiosk.max_amount` in the kiosk's currency.
    pub fn max_amount(&self) -> Money {
        self.kiosk.max_amount
    }
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
            checkout_url: c.checkout_url.to_string(),
            api_url: c.api_url.to_string(),
            account_id: c.account_id.to_string(),
            client_id: c.client_id.clone(),
            client_secret,
            connect_timeout: c.connect_timeout,
            call_timeout: c.call_timeout,
        })
    }
}

impl DinteroConfig {
    /// Asks the API for a token with these credentials (the secret read by [`Config::load`]):
    /// what `credentials set` checks after writing new ones. The error says what the API
    /// answered, or that it could not be reached.
    pub async fn check_credentials(&self) -> Result<(), String> {
        use crate::dintero::Gateway as _;
        let client = crate::dintero::client::Client::new(
            ClientConfig::from_config(self).map_err(|e| e.to_string())?,
        );
        client
            .ensure_token()
            .await
            .map_err(|e| format!("{}: {e}", self.api_url))
    }
}

/// The payment flow's settings, taken from the composed config; defined here so that the flow
/// does not depend on the config file's layout.
impl FlowConfig {
    /// Takes the flow's settings from a loaded config.
    pub fn from_config(config: &Config) -> FlowConfig {
        FlowConfig {
            kiosk_id: config.kiosk.id.to_string(),
            currency: config.currency(),
            max_amount: config.max_amount(),
            profile_id: config.dintero.profile_id.clone(),
            return_url: config.dintero.return_url.clone(),
            vat_percent: config.dintero.vat_percent,
            store_id: config.store.id.clone(),
            terminal_id: config.store.terminal_id.clone(),
            payout_destination_id: config.store.payout_destination_id.clone(),
            timeout: config.payment.timeout,
            polling: config.payment.polling,
            pickup_timeout: config.payment.pickup_timeout,
            result_screen: config.payment.result_screen,
            health_interval: config.payment.health_interval,
            keep_final: config.state.keep_final,
            lookup_confirm_delay: config.dintero.call_timeout + config.payment.polling.base(),
            paid_cart_window: config.payment.paid_cart_window,
            callback_url: config
                .callback
                .as_ref()
                .map(|callback| callback.public_url.callback_url()),
        }
    }
}

/// Reads `gpio.board` (if set) and fills every pin key `[gpio]` leaves unset from it; a relative
/// path is read from the config file's directory.
fn apply_pin_map(gpio: &mut GpioConfig, config_path: &Path) -> Result<(), ConfigError> {
    let Some(board) = &gpio.board else {
        return Ok(());
    };
    let file = match config_path.parent() {
        Some(dir) if board.is_relative() => dir.join(board),
        _ => board.clone(),
    };
    let map = crate::board::pins::load(&file).map_err(|e| match e {
        PinMapError::Read(e) => ConfigError::Invalid {
            key: "gpio.board",
            value: format!("{:?}", board.display().to_string()),
            expected: format!(
                "a readable pin map file such as /usr/share/kioskpay/pins/display-hat-mini.toml \
                 (reading {} failed: {e})",
                file.display()
            ),
        },
        PinMapError::Parse(message) => ConfigError::Parse {
            path: file.clone(),
            message,
        },
    })?;
    gpio.buttons = gpio.buttons.take().or(map.buttons);
    gpio.cancel = gpio.cancel.take().or(map.cancel);
    gpio.pulse = gpio.pulse.take().or(map.pulse);
    gpio.busy = gpio.busy.take().or(map.busy);
    gpio.vend = gpio.vend.take().or(map.vend);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::codes::Format;
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
        assert_eq!(c.payment.timeout, Duration::from_secs(120));
        assert_eq!(c.input.kind, InputKind::Serial);
        assert_eq!(c.display.kind, DisplayKind::Png);
        assert_eq!(c.display.png_keep, 200);
        assert_eq!(c.payment.paid_cart_window, Duration::from_secs(86400));
        assert_eq!(
            c.dintero.checkout_url.as_str(),
            "https://checkout.dintero.com"
        );
    }

    #[test]
    fn polling_is_adaptive_by_default_and_fixed_on_request() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.payment.polling,
            Polling::Adaptive {
                base: Duration::from_millis(250)
            }
        );
        let c = parse(&format!(
            "{MINIMAL}\n[payment]\npolling = \"fixed\"\npoll_interval_ms = 500\n"
        ))
        .unwrap();
        assert_eq!(
            c.payment.polling,
            Polling::Fixed {
                period: Duration::from_millis(500)
            }
        );
        let msg = parse(&format!("{MINIMAL}\n[payment]\npolling = \"often\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("unknown variant `often`, expected `adaptive` or `fixed`"),
            "{msg}"
        );
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
    fn callback_is_off_without_its_section_and_all_three_keys_or_an_error_with_it() {
        assert_eq!(parse(MINIMAL).unwrap().callback, None);
        assert_eq!(
            FlowConfig::from_config(&parse(MINIMAL).unwrap()).callback_url,
            None
        );
        let full = "bind = \"127.0.0.1:8080\"\npublic_url = \"https://kiosk-1.example.com/dintero/cb\"\nsignature_secret_file = \"/etc/kioskpay/callback_secret\"\n";
        let c = parse(&format!("{MINIMAL}[callback]\n{full}")).unwrap();
        let callback = c.callback.as_ref().unwrap();
        assert_eq!(callback.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            callback.public_url.as_str(),
            "https://kiosk-1.example.com/dintero/cb"
        );
        assert_eq!(callback.signature_secret, None, "parse reads no secret");
        assert_eq!(
            FlowConfig::from_config(&c).callback_url.as_deref(),
            Some("https://kiosk-1.example.com/dintero/cb?report_error=true")
        );
        let cases = [
            (
                full.replace("bind = \"127.0.0.1:8080\"\n", ""),
                "callback.bind = (not set): expected set together",
            ),
            (
                full.replace("signature_secret_file", "#"),
                "callback.signature_secret_file = (not set)",
            ),
            (
                full.replace("127.0.0.1:8080", "localhost:8080"),
                "callback.bind = \"localhost:8080\": expected an address and port",
            ),
            (
                full.replace("https://kiosk-1", "ftp://kiosk-1"),
                "callback.public_url = \"ftp://kiosk-1.example.com/dintero/cb\": expected the URL Dintero calls",
            ),
            (format!("{full}port = 1\n"), "unknown field `port`"),
        ];
        for (section, want) in cases {
            let msg = parse(&format!("{MINIMAL}[callback]\n{section}"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(want), "{section:?}: {msg}");
        }
    }

    #[test]
    fn callback_secret_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let client = dir.path().join("client_secret");
        std::fs::write(&client, "demo-secret\n").unwrap();
        std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o600)).unwrap();
        let secret = dir.path().join("callback_secret");
        std::fs::write(&secret, "callback-secret-value\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = dir.path().join("k.toml");
        std::fs::write(
            &cfg,
            format!(
                "{}[callback]\nbind = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1/cb\"\nsignature_secret_file = {:?}\n",
                MINIMAL.replace("/nonexistent", client.to_str().unwrap()),
                secret.to_str().unwrap()
            ),
        )
        .unwrap();
        let msg = Config::load(&cfg).unwrap_err().to_string();
        assert!(
            msg.starts_with("callback.signature_secret_file")
                && msg.contains("mode 644")
                && msg.contains("chmod 600"),
            "{msg}"
        );
        assert!(!msg.contains("callback-secret-value"));
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::load(&cfg).unwrap();
        let callback = c.callback.as_ref().unwrap();
        assert_eq!(
            callback.signature_secret.as_ref().map(Secret::expose),
            Some("callback-secret-value")
        );
        assert!(!format!("{c:?}").contains("callback-secret-value"));
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
