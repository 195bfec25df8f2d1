//! The config file as serde reads it: strings and numbers, before they mean anything.
//!
//! Each section here is what the TOML says, with its defaults; `parse` turns it into the typed
//! section of [`super`] or names the first key it cannot use. Unknown keys are errors (a
//! misspelt `timeout_s` must not leave a kiosk on a default nobody chose). The keys and their
//! meaning are documented on the fields below and in `packaging/kioskpay.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{
    BaseUrl, DinteroConfig, KioskConfig, KioskId, MetricsConfig, PaymentConfig, StateConfig,
    StoreConfig,
};
use crate::callback::{CallbackConfig, PublicUrl};
use crate::dintero::{AccountId, TerminalId};
use crate::display::DisplayConfig;
use crate::gpio::GpioConfig;
use crate::input::InputConfig;
use crate::money::{Currency, Language, Money};
use crate::payment::poll::{Polling, PollingKind};
use crate::setting::Invalid;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub kiosk: Kiosk,
    pub dintero: Dintero,
    pub store: Store,
    #[serde(default)]
    pub input: InputConfig,
    #[serde(default)]
    pub display: DisplayConfig,
    #[serde(default)]
    pub payment: Payment,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub gpio: GpioConfig,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub callback: Callback,
}

/// `[kiosk]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Kiosk {
    /// Goes into every `merchant_reference`; letters, digits and `-` only.
    id: String,
    /// The currency carts are charged in.
    #[serde(default = "default_currency")]
    currency: String,
    /// The customer's language: `nb` or `en`.
    #[serde(default)]
    language: Language,
    /// Largest cart in minor units; larger carts are refused before any API call.
    #[serde(default = "default_max_amount")]
    max_amount: u64,
}

impl Kiosk {
    pub(super) fn parse(self) -> Result<KioskConfig, Invalid> {
        let id = KioskId::parse(&self.id).map_err(|e| Invalid::quoted("kiosk.id", &self.id, e))?;
        let currency = Currency::from_code(&self.currency).ok_or_else(|| {
            Invalid::quoted(
                "kiosk.currency",
                &self.currency,
                format!("one of {}", Currency::known_codes().join(", ")),
            )
        })?;
        if self.max_amount == 0 {
            return Err(Invalid::quoted(
                "kiosk.max_amount",
                0,
                "a positive amount in minor units (1000000 = 10 000.00)",
            ));
        }
        Ok(KioskConfig {
            id,
            currency,
            language: self.language,
            max_amount: Money::new(self.max_amount, currency),
        })
    }
}

/// `[dintero]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Dintero {
    /// `T` + 8 digits (sandbox) or `P` + 8 digits (production).
    account_id: String,
    /// The API client's id.
    client_id: String,
    /// File holding the client secret; must not be group- or world-readable.
    client_secret_file: PathBuf,
    /// A payment profile whose only method is Seitatech in-person.
    profile_id: String,
    /// Base URL of the checkout API.
    #[serde(default = "default_checkout_url")]
    checkout_url: String,
    /// Base URL of the management API (auth, terminals).
    #[serde(default = "default_api_url")]
    api_url: String,
    /// `url.return_url` of sessions: required by the schema, unused by a terminal.
    #[serde(default = "default_return_url")]
    return_url: String,
    /// VAT rate in percent put on the order line.
    #[serde(default = "default_vat")]
    vat_percent: u32,
    /// TCP connect timeout.
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    /// Whole-call timeout.
    #[serde(default = "default_call_timeout_ms")]
    call_timeout_ms: u64,
}

impl Dintero {
    pub(super) fn parse(self) -> Result<DinteroConfig, Invalid> {
        let account_id = AccountId::parse(&self.account_id)
            .map_err(|e| Invalid::quoted("dintero.account_id", &self.account_id, e))?;
        if self.client_id.is_empty() {
            return Err(Invalid::quoted(
                "dintero.client_id",
                "",
                "the API client's id from Dintero Backoffice",
            ));
        }
        if self.profile_id.is_empty() {
            return Err(Invalid::quoted(
                "dintero.profile_id",
                "",
                "a payment profile id whose only method is Seitatech in-person",
            ));
        }
        let url = |key, text: &str| BaseUrl::parse(text).map_err(|e| Invalid::quoted(key, text, e));
        let checkout_url = url("dintero.checkout_url", &self.checkout_url)?;
        let api_url = url("dintero.api_url", &self.api_url)?;
        if self.connect_timeout_ms == 0 || self.call_timeout_ms == 0 {
            return Err(Invalid::quoted(
                "dintero.call_timeout_ms",
                0,
                "a positive number of milliseconds",
            ));
        }
        if self.vat_percent > 100 {
            return Err(Invalid::quoted(
                "dintero.vat_percent",
                self.vat_percent,
                "a VAT rate from 0 to 100",
            ));
        }
        Ok(DinteroConfig {
            account_id,
            client_id: self.client_id,
            client_secret_file: self.client_secret_file,
            profile_id: self.profile_id,
            checkout_url,
            api_url,
            return_url: self.return_url,
            vat_percent: self.vat_percent,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            call_timeout: Duration::from_millis(self.call_timeout_ms),
            client_secret: None,
        })
    }
}

/// `[store]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Store {
    /// The merchant's store id.
    id: String,
    /// The paired terminal, `<aid>-T<4 digits>`.
    terminal_id: String,
    /// The payout destination linked to the store.
    payout_destination_id: String,
}

impl Store {
    pub(super) fn parse(self, account: &AccountId) -> Result<StoreConfig, Invalid> {
        let terminal_id = TerminalId::parse(&self.terminal_id, account)
            .map_err(|e| Invalid::quoted("store.terminal_id", &self.terminal_id, e))?;
        if self.id.is_empty() {
            return Err(Invalid::quoted("store.id", "", "the merchant's store id"));
        }
        if self.payout_destination_id.is_empty() {
            return Err(Invalid::quoted(
                "store.payout_destination_id",
                "",
                "the payout destination linked to the store",
            ));
        }
        Ok(StoreConfig {
            id: self.id,
            terminal_id,
            payout_destination_id: self.payout_destination_id,
        })
    }
}

/// `[payment]`
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Payment {
    /// After this long the kiosk cancels, re-reads, and reports what really happened.
    #[serde(default = "default_timeout_s")]
    timeout_s: u64,
    /// How a running payment is read: `adaptive` (by phase) or `fixed` (one period).
    #[serde(default = "default_polling")]
    polling: PollingKind,
    /// The adaptive policy's shortest period, or the fixed policy's period.
    #[serde(default = "default_poll_ms")]
    poll_interval_ms: u64,
    /// A terminal that has not picked a session up after this long is offline.
    #[serde(default = "default_pickup_s")]
    pickup_timeout_s: u64,
    /// How long a result screen stays before the idle screen.
    #[serde(default = "default_result_s")]
    result_screen_s: u64,
    /// How often the health gate checks the terminal and the token while idle.
    #[serde(default = "default_health_s")]
    health_interval_s: u64,
    /// How long after its approval a payment slip (a GS1 code with a cart reference) is refused
    /// as already paid when scanned again; 0 never refuses a slip (slips whose reference is
    /// printed on many). Signed cart codes are refused for as long as the journal remembers
    /// the approval, whatever this says.
    #[serde(default = "default_paid_cart_window_s")]
    paid_cart_window_s: u64,
}

impl Default for Payment {
    fn default() -> Self {
        Payment {
            timeout_s: default_timeout_s(),
            polling: default_polling(),
            poll_interval_ms: default_poll_ms(),
            pickup_timeout_s: default_pickup_s(),
            result_screen_s: default_result_s(),
            health_interval_s: default_health_s(),
            paid_cart_window_s: default_paid_cart_window_s(),
        }
    }
}

impl Payment {
    pub(super) fn parse(self) -> Result<PaymentConfig, Invalid> {
        if !(10..=3600).contains(&self.timeout_s) {
            return Err(Invalid::quoted(
                "payment.timeout_s",
                self.timeout_s,
                "10 to 3600 seconds",
            ));
        }
        if !(50..=10_000).contains(&self.poll_interval_ms) {
            return Err(Invalid::quoted(
                "payment.poll_interval_ms",
                self.poll_interval_ms,
                "50 to 10000 milliseconds",
            ));
        }
        if self.pickup_timeout_s == 0 || self.pickup_timeout_s >= self.timeout_s {
            return Err(Invalid::quoted(
                "payment.pickup_timeout_s",
                self.pickup_timeout_s,
                "a positive number of seconds below payment.timeout_s",
            ));
        }
        if self.health_interval_s == 0 {
            return Err(Invalid::quoted(
                "payment.health_interval_s",
                0,
                "a positive number of seconds",
            ));
        }
        Ok(PaymentConfig {
            timeout: Duration::from_secs(self.timeout_s),
            polling: Polling::new(self.polling, Duration::from_millis(self.poll_interval_ms)),
            pickup_timeout: Duration::from_secs(self.pickup_timeout_s),
            result_screen: Duration::from_secs(self.result_screen_s),
            health_interval: Duration::from_secs(self.health_interval_s),
            paid_cart_window: Duration::from_secs(self.paid_cart_window_s),
        })
    }
}

/// `[metrics]`
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Metrics {
    /// The `.prom` file, e.g. `/var/lib/node_exporter/textfile_collector/kioskpay.prom`;
    /// unset means no metrics are written.
    #[serde(default)]
    textfile: Option<PathBuf>,
    /// How often the file is rewritten (it is also rewritten after each payment); 0 means the
    /// default of 15 s.
    #[serde(default)]
    interval_s: u64,
}

impl Metrics {
    pub(super) fn parse(self) -> MetricsConfig {
        let seconds = if self.interval_s == 0 {
            15
        } else {
            self.interval_s
        };
        MetricsConfig {
            textfile: self.textfile,
            interval: Duration::from_secs(seconds),
        }
    }
}

/// `[callback]`: all three keys or none (then the kiosk only polls).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Callback {
    /// Where the listener accepts connections, e.g. `127.0.0.1:8080` behind a TLS proxy.
    #[serde(default)]
    bind: Option<String>,
    /// The URL Dintero calls (`url.callback_url` of every session) and that it signs.
    #[serde(default)]
    public_url: Option<String>,
    /// File holding the account's signature secret; must not be group- or world-readable.
    #[serde(default)]
    signature_secret_file: Option<PathBuf>,
}

impl Callback {
    pub(super) fn parse(self) -> Result<Option<CallbackConfig>, Invalid> {
        const TOGETHER: &str = "set together with the other [callback] keys (bind, public_url, signature_secret_file), or remove [callback] to poll only";
        let (bind, public_url, signature_secret_file) =
            match (self.bind, self.public_url, self.signature_secret_file) {
                (None, None, None) => return Ok(None),
                (Some(bind), Some(url), Some(file)) => (bind, url, file),
                (bind, url, _) => {
                    let key = if bind.is_none() {
                        "callback.bind"
                    } else if url.is_none() {
                        "callback.public_url"
                    } else {
                        "callback.signature_secret_file"
                    };
                    return Err(Invalid::plain(key, "(not set)", TOGETHER));
                }
            };
        let bind = bind.parse::<SocketAddr>().map_err(|_| {
            Invalid::quoted(
                "callback.bind",
                &bind,
                "an address and port to listen on, such as 127.0.0.1:8080 (behind a proxy on this kiosk) or 0.0.0.0:8443",
            )
        })?;
        let public_url = PublicUrl::parse(&public_url)
            .map_err(|e| Invalid::quoted("callback.public_url", &public_url, e))?;
        Ok(Some(CallbackConfig {
            bind,
            public_url,
            signature_secret_file,
            signature_secret: None,
        }))
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
fn default_polling() -> PollingKind {
    PollingKind::Adaptive
}
fn default_poll_ms() -> u64 {
    250
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
