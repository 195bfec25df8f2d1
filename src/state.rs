//! What the kiosk is doing, as the customer and the technician should see it.
//!
//! The payment flow is the only writer: it publishes a [`KioskState`] on a
//! `tokio::sync::watch` channel after every step. The display and the console only read it, so a
//! slow panel skips intermediate states instead of holding up a payment, and nothing that draws
//! can change what is charged.
//!
//! The type carries everything a screen needs and nothing a screen could act on: amounts,
//! references to quote, reasons in enums (the display words them per language), and the
//! deadline of a countdown as an instant (the display computes what is left when it draws).

use tokio::time::Instant;

use crate::messages::CustomerReason;
use crate::money::Money;

/// One published state of the kiosk.
#[derive(Clone, Debug, PartialEq)]
pub enum KioskState {
    /// Starting up: config read, checking the terminal and any unfinished payment.
    Starting,
    /// Ready for a cart.
    Idle,
    /// Card payment cannot be taken now; carts are refused with this reason until it clears.
    Unavailable {
        /// Why.
        reason: UnavailableReason,
    },
    /// A cart was refused before anything was sent to Dintero; shown briefly, then back to idle.
    Refused {
        /// Why, in an enum the display words for the customer.
        reason: RefusalReason,
    },
    /// Creating the Dintero session: the terminal will prompt in a moment.
    Creating {
        /// The total being charged.
        amount: Money,
        /// Our `merchant_reference`, to quote if anything goes wrong.
        reference: String,
    },
    /// The terminal is prompting: present, tap or insert the card.
    WaitingForCard {
        /// The total being charged.
        amount: Money,
        /// Our `merchant_reference`.
        reference: String,
        /// When the kiosk gives up and cancels (the payment still wins if it completes).
        deadline: Instant,
    },
    /// The card was accepted and the payment is being completed (authorized, capture pending).
    Processing {
        /// The total being charged.
        amount: Money,
        /// Our `merchant_reference`.
        reference: String,
    },
    /// Paid: the transaction is captured.
    Approved {
        /// The total charged.
        amount: Money,
        /// Our `merchant_reference`.
        reference: String,
        /// Dintero's transaction id (for a receipt QR code and refunds).
        transaction_id: String,
        /// Card brand and masked number, when the terminal reported them.
        card: Option<String>,
    },
    /// The card was declined; nothing was charged.
    Declined {
        /// The total that was asked for.
        amount: Money,
        /// Our `merchant_reference`.
        reference: String,
        /// What kind of decline, so the customer knows what to try next.
        kind: DeclineKind,
    },
    /// The payment was cancelled; nothing was charged.
    Cancelled {
        /// The total that was asked for.
        amount: Money,
        /// Our `merchant_reference`.
        reference: String,
        /// Who cancelled.
        by: CancelledBy,
    },
    /// Nobody paid in time (the terminal's or the kiosk's timeout); nothing was charged.
    TimedOut {
        /// The total that was asked for.
        amount: Money,
        /// Our `merchant_reference`.
        reference: String,
    },
    /// The payment failed for a technical reason; nothing was charged.
    Failed {
        /// The total that was asked for.
        amount: Money,
        /// Our `merchant_reference`.
        reference: String,
        /// What failed.
        kind: FailKind,
    },
    /// Dintero has a payment under this reference that is not this cart's: the kiosk cannot
    /// confirm the payment, charges nothing more, and asks the customer to fetch staff.
    Conflict {
        /// The total that was asked for.
        amount: Money,
        /// Our `merchant_reference`, for staff to look up.
        reference: String,
    },
    /// The outcome of a payment is not known yet (API unreachable, lost response): the kiosk keeps
    /// asking and takes no new payment until it knows.
    Checking {
        /// Our `merchant_reference`, for the customer to quote.
        reference: String,
    },
    /// The kiosk cannot take payments until a technician fixes it (for example the customer
    /// display does not work: no payment is taken that the customer could not follow).
    OutOfService {
        /// A short error code a technician looks up in the manual, e.g. `E-PANEL-INIT`.
        code: String,
    },
    /// A technician is working on the kiosk; customers are told to wait or ask staff.
    Technician,
}

impl KioskState {
    /// Short machine name of the state, for logs, `STATUS=` lines and the console.
    pub fn name(&self) -> &'static str {
        match self {
            KioskState::Starting => "starting",
            KioskState::Idle => "idle",
            KioskState::Unavailable { .. } => "unavailable",
            KioskState::Refused { .. } => "refused",
            KioskState::Creating { .. } => "creating",
            KioskState::WaitingForCard { .. } => "waiting_for_card",
            KioskState::Processing { .. } => "processing",
            KioskState::Approved { .. } => "approved",
            KioskState::Declined { .. } => "declined",
            KioskState::Cancelled { .. } => "cancelled",
            KioskState::TimedOut { .. } => "timed_out",
            KioskState::Failed { .. } => "failed",
            KioskState::Conflict { .. } => "conflict",
            KioskState::Checking { .. } => "checking",
            KioskState::OutOfService { .. } => "out_of_service",
            KioskState::Technician => "technician",
        }
    }
}

/// Why card payment is unavailable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnavailableReason {
    /// Dintero (or the network to it) cannot be reached.
    ApiUnreachable,
    /// The API refuses our credentials: a technician must fix the config.
    Credentials,
    /// The terminal's status is not `ACTIVE` (the status as Dintero gave it).
    TerminalNotActive(String),
    /// The terminal did not pick the last payment up: it is offline although its status may say
    /// `ACTIVE`.
    TerminalOffline,
    /// The journal cannot be written (disk full, read-only file system): no payment may start
    /// that the kiosk could forget.
    Storage,
    /// The barcode scanner is gone (USB unplugged, cable loose) or cannot be opened: nobody can
    /// scan a code. Clears by itself when the scanner is back.
    Scanner,
}

/// Why a cart was refused before any call to Dintero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// A payment is already running.
    Busy,
    /// Card payment is unavailable right now.
    Unavailable,
    /// The amount is zero.
    ZeroAmount,
    /// The amount is above the kiosk's `max_amount`.
    TooLarge {
        /// The largest amount this kiosk takes.
        max: Money,
    },
    /// The cart is in another currency than the kiosk's.
    WrongCurrency {
        /// The currency the code asked for.
        given: String,
    },
    /// The scanned code was refused: unreadable, not a payment code, expired, already paid...
    Code {
        /// What was wrong, precisely; for the log and the technician, never shown.
        detail: String,
        /// What the customer is told.
        customer: CustomerReason,
    },
}

/// The short problem codes a technician reads on the customer display's footer and in the
/// console's `status`, defined once here (the display's own panel codes, `E-PANEL-*`, live in
/// [`crate::messages::PanelHealth`] because the display reports them). README's
/// "Troubleshooting" section lists each with what to check.
pub mod code {
    /// Dintero (or the network to it) cannot be reached.
    pub const NET: &str = "E-NET";
    /// Dintero refuses the API client's credentials.
    pub const AUTH: &str = "E-AUTH";
    /// The terminal is not `ACTIVE`, or did not pick the last payment up.
    pub const TERM: &str = "E-TERM";
    /// The barcode scanner is not there.
    pub const SCANNER: &str = "E-SCANNER";
    /// The journal cannot be written.
    pub const JOURNAL: &str = "E-JOURNAL";
    /// The state directory's file system is nearly full.
    pub const DISK: &str = "E-DISK";
}

impl UnavailableReason {
    /// The problem's short code ([`code`]).
    pub fn code(&self) -> &'static str {
        match self {
            UnavailableReason::ApiUnreachable => code::NET,
            UnavailableReason::Credentials => code::AUTH,
            UnavailableReason::TerminalNotActive(_) | UnavailableReason::TerminalOffline => {
                code::TERM
            }
            UnavailableReason::Storage => code::JOURNAL,
            UnavailableReason::Scanner => code::SCANNER,
        }
    }
}

/// What an operator reads in the log, e.g. `reason=Dintero cannot be reached`.
impl std::fmt::Display for UnavailableReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnavailableReason::ApiUnreachable => f.write_str("Dintero cannot be reached"),
            UnavailableReason::Credentials => f.write_str(
                "Dintero refuses the API client (dintero.client_id, client_secret_file, account_id)",
            ),
            UnavailableReason::TerminalNotActive(status) => {
                write!(f, "the terminal is {status}, not ACTIVE")
            }
            UnavailableReason::TerminalOffline => {
                f.write_str("the terminal did not pick the last payment up (offline?)")
            }
            UnavailableReason::Storage => f.write_str("the journal cannot be written"),
            UnavailableReason::Scanner => f.write_str("the scanner is not there"),
        }
    }
}

/// What an operator reads in the log, e.g. `reason=too large: above max_amount NOK 10000.00`.
impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefusalReason::Busy => f.write_str("a payment is running"),
            RefusalReason::Unavailable => f.write_str("card payment is unavailable"),
            RefusalReason::ZeroAmount => f.write_str("the amount is zero"),
            RefusalReason::TooLarge { max } => {
                write!(f, "too large: above kiosk.max_amount {max}")
            }
            RefusalReason::WrongCurrency { given } => {
                write!(f, "in {given}, not the kiosk's currency")
            }
            RefusalReason::Code { detail, .. } => f.write_str(detail),
        }
    }
}

/// Kinds of decline worth telling apart for the customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclineKind {
    /// The issuer declined the card.
    Declined,
    /// Not enough money on the account.
    InsufficientFunds,
}

/// Who cancelled a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelledBy {
    /// The customer pressed cancel on the terminal.
    Customer,
    /// The kiosk cancelled it (a technician, or a cancel button on the kiosk).
    Kiosk,
}

/// Kinds of technical failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailKind {
    /// The terminal or the acquirer reported a technical error.
    Technical,
    /// The terminal never picked the payment up.
    TerminalOffline,
    /// Dintero refused to create the payment (a configuration problem).
    Rejected,
}
