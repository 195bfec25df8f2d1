//! What the customer should see for a [`KioskState`]: a pure model, no pixels.
//!
//! [`screen_for`] decides the words, the amount, the tone and the icon; [`super::draw()`] decides
//! where they go on a given panel; the terminal backend prints the same model as text. Keeping the
//! decision pure means every screen is testable without a panel, and the same wording reaches the
//! customer whether the kiosk has an SPI panel, a framebuffer or only a log.
//!
//! No information is carried by colour alone: every outcome has its own title word and its own
//! [`Icon`] shape, so a colour-blind customer, or one looking at a washed-out panel in sunlight,
//! reads the same outcome as everyone else.

use std::time::Duration;

use tokio::time::Instant;

use super::text::{self, Phrase};
use crate::messages::CustomerReason;
use crate::money::Language;
use crate::state::{
    CancelledBy, DeclineKind, FailKind, KioskState, RefusalReason, UnavailableReason,
};

/// How many frames the activity indicator cycles through (one per second).
pub const ACTIVITY_PHASES: u8 = 3;

/// The longest piece of outside text (terminal status, currency code, card summary) shown as is;
/// longer ones are cut so a garbled value cannot push the instructions off the screen.
const MAX_FOREIGN_CHARS: usize = 32;

/// The severity of a screen, which picks its colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tone {
    /// Normal operation: welcome, instructions, progress.
    Info,
    /// Paid.
    Success,
    /// Nothing was charged, or the customer must wait: cancelled, timed out, unavailable,
    /// refused, checking.
    Warning,
    /// The payment did not go through because of the card or a fault: declined, failed.
    Error,
}

/// The symbol at the top of a screen; each outcome has its own shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Icon {
    /// A barcode: scan your code.
    Scan,
    /// A payment card: use the terminal.
    Card,
    /// An hourglass: something is in progress.
    Hourglass,
    /// A check mark: paid.
    Check,
    /// A cross: declined.
    Cross,
    /// A circle with a bar: cancelled.
    Ban,
    /// A clock: timed out.
    Clock,
    /// An exclamation mark: failed, unavailable, refused, out of service.
    Exclamation,
    /// A wrench: a technician is working on the kiosk.
    Wrench,
}

impl Icon {
    /// A one-character rendering for text backends (terminal, logs).
    pub fn symbol(self) -> char {
        match self {
            Icon::Scan => '#',
            Icon::Card => '=',
            Icon::Hourglass => '…',
            Icon::Check => '✓',
            Icon::Cross => '✗',
            Icon::Ban => '⊘',
            Icon::Clock => '◷',
            Icon::Exclamation => '!',
            Icon::Wrench => '⚒',
        }
    }
}

/// A live countdown: the whole seconds left and the words for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Countdown {
    /// Whole seconds left, rounded up so that "0" only shows once the deadline has passed.
    pub seconds: u64,
    /// The seconds in words, in the screen's language.
    pub text: String,
}

/// Everything one screen shows, already worded in the customer's language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Screen {
    /// Colours, and how urgent the screen is.
    pub tone: Tone,
    /// The symbol that says the same as the title, for readers who do not read the title.
    pub icon: Icon,
    /// The one-line headline ("Payment approved").
    pub title: String,
    /// The amount in large type, when a payment is involved.
    pub amount: Option<String>,
    /// Instructions and explanations, one sentence each, most important first; drawers wrap
    /// them and drop the last ones first when space runs out.
    pub lines: Vec<String>,
    /// Small print at the bottom: the reference to quote, or a status for staff.
    pub footer: Option<String>,
    /// Seconds left to present the card, while the terminal prompts.
    pub countdown: Option<Countdown>,
    /// The frame of the "still working" indicator, `0..ACTIVITY_PHASES`, while the kiosk is busy.
    /// [`screen_for`] always starts at 0; the display task advances it once per second.
    pub activity: Option<u8>,
    /// Text to show as a QR code (the receipt link on the approved screen), when configured.
    pub qr: Option<String>,
}

impl Screen {
    fn new(tone: Tone, icon: Icon, title: Phrase, lang: Language) -> Screen {
        Screen {
            tone,
            icon,
            title: title.text(lang).to_string(),
            amount: None,
            lines: Vec::new(),
            footer: None,
            countdown: None,
            activity: None,
            qr: None,
        }
    }

    fn line(mut self, phrase: Phrase, lang: Language) -> Screen {
        self.lines.push(phrase.text(lang).to_string());
        self
    }

    fn text_line(mut self, line: String) -> Screen {
        self.lines.push(line);
        self
    }

    fn amount(mut self, amount: String) -> Screen {
        self.amount = Some(amount);
        self
    }

    fn reference(mut self, lang: Language, reference: &str) -> Screen {
        self.footer = Some(text::reference(lang, &clip(reference)));
        self
    }

    fn busy(mut self) -> Screen {
        self.activity = Some(0);
        self
    }
}

/// What a refused code is, and what the customer can do about it.
fn code_refusal(reason: CustomerReason) -> (Phrase, Phrase) {
    use Phrase::*;
    match reason {
        CustomerReason::Unreadable => (CodeUnreadable, ScanAgain),
        CustomerReason::NotAPaymentCode => (NotAPaymentCode, ScanPaymentCode),
        CustomerReason::NotAccepted => (CodeNotAccepted, ContactStaff),
        CustomerReason::WrongCurrency => (CodeWrongCurrency, ContactStaff),
        CustomerReason::InvalidAmount => (CodeAmountInvalid, ContactStaff),
        CustomerReason::Expired => (CodeExpired, AskForNewCode),
        CustomerReason::AlreadyPaid => (CodeAlreadyPaid, ContactStaff),
        CustomerReason::Forged => (CodeNotValid, ContactStaff),
        CustomerReason::KioskFault => (NeedsStaffSetup, ContactStaff),
    }
}

/// Builds the screen for `state` in `lang`, as it should look at `now`.
///
/// Pure: the same arguments always give the same screen, so tests and the `render` command can
/// ask for any screen at any moment of a countdown.
pub fn screen_for(state: &KioskState, lang: Language, now: Instant) -> Screen {
    use Phrase::*;
    match state {
        KioskState::Starting => Screen::new(Tone::Info, Icon::Hourglass, StartingTitle, lang)
            .line(StartingBody, lang)
            .busy(),
        KioskState::Idle => Screen::new(Tone::Info, Icon::Scan, WelcomeTitle, lang)
            .line(ScanToPay, lang)
            .line(ThenPayByCard, lang),
        KioskState::Unavailable { reason } => {
            let screen = Screen::new(Tone::Warning, Icon::Exclamation, UnavailableTitle, lang);
            match reason {
                UnavailableReason::ApiUnreachable => screen
                    .line(ServiceUnreachable, lang)
                    .line(TryAgainSoon, lang),
                UnavailableReason::Credentials => {
                    screen.line(NeedsStaffSetup, lang).line(ContactStaff, lang)
                }
                UnavailableReason::TerminalNotActive(status) => {
                    let mut screen = screen.line(TerminalNotReady, lang).line(ContactStaff, lang);
                    screen.footer = Some(text::terminal_status(lang, &clip(status)));
                    screen
                }
                UnavailableReason::TerminalOffline => screen
                    .line(TerminalNotResponding, lang)
                    .line(TryAgainSoon, lang)
                    .line(ContactStaff, lang),
                UnavailableReason::Scanner => {
                    let mut screen =
                        Screen::new(Tone::Warning, Icon::Exclamation, ScannerTitle, lang)
                            .line(ScannerBroken, lang)
                            .line(ContactStaff, lang);
                    screen.footer = Some(text::error_code(lang, reason.code()));
                    screen
                }
                UnavailableReason::Storage => {
                    let mut screen = screen.line(NeedsStaffSetup, lang).line(ContactStaff, lang);
                    // A short code a technician can look up; the customer only needs "staff".
                    screen.footer = Some(reason.code().into());
                    screen
                }
            }
        }
        KioskState::Refused { reason } => {
            let screen = Screen::new(Tone::Warning, Icon::Exclamation, RefusedTitle, lang);
            let screen = match reason {
                RefusalReason::Busy => screen
                    .line(AlreadyPaying, lang)
                    .line(FinishCurrentFirst, lang),
                RefusalReason::Unavailable => {
                    screen.line(NotAvailableNow, lang).line(TryAgainSoon, lang)
                }
                RefusalReason::ZeroAmount => screen.line(NothingToPay, lang),
                RefusalReason::TooLarge { max } => screen
                    .line(AmountTooLarge, lang)
                    .text_line(text::max_amount(lang, max))
                    .line(ContactStaff, lang),
                RefusalReason::WrongCurrency { given } => screen
                    .text_line(text::wrong_currency(lang, &clip(given)))
                    .line(ContactStaff, lang),
                RefusalReason::Code { customer, .. } => {
                    let (what, advice) = code_refusal(*customer);
                    screen.line(what, lang).line(advice, lang)
                }
            };
            screen.line(NothingCharged, lang)
        }
        KioskState::Creating { amount, reference } => {
            Screen::new(Tone::Info, Icon::Card, CreatingTitle, lang)
                .amount(amount.display(lang))
                .line(TerminalGettingReady, lang)
                .reference(lang, reference)
                .busy()
        }
        KioskState::WaitingForCard {
            amount,
            reference,
            deadline,
        } => {
            let seconds = seconds_left(*deadline, now);
            let mut screen = Screen::new(Tone::Info, Icon::Card, WaitingTitle, lang)
                .amount(amount.display(lang))
                .line(FollowTerminal, lang)
                .line(TapOrInsert, lang)
                .reference(lang, reference);
            screen.countdown = Some(Countdown {
                seconds,
                text: text::seconds_left(lang, seconds),
            });
            screen
        }
        KioskState::Processing { amount, reference } => {
            Screen::new(Tone::Info, Icon::Hourglass, ProcessingTitle, lang)
                .amount(amount.display(lang))
                .line(PleaseWaitDontLeave, lang)
                .reference(lang, reference)
                .busy()
        }
        KioskState::Approved {
            amount,
            reference,
            card,
            ..
        } => {
            let mut screen = Screen::new(Tone::Success, Icon::Check, ApprovedTitle, lang)
                .amount(amount.display(lang))
                .line(ThankYou, lang);
            if let Some(card) = card {
                screen = screen.text_line(text::card(lang, &clip(card)));
            }
            screen.reference(lang, reference)
        }
        KioskState::Declined {
            amount,
            reference,
            kind,
        } => {
            let screen = match kind {
                DeclineKind::Declined => Screen::new(Tone::Error, Icon::Cross, DeclinedTitle, lang)
                    .line(BankDeclined, lang)
                    .line(NothingCharged, lang)
                    .line(TryOtherCardOrBank, lang),
                DeclineKind::InsufficientFunds => {
                    Screen::new(Tone::Error, Icon::Cross, InsufficientTitle, lang)
                        .line(NotEnoughMoney, lang)
                        .line(NothingCharged, lang)
                        .line(TryOtherCard, lang)
                }
            };
            screen
                .amount(amount.display(lang))
                .reference(lang, reference)
        }
        KioskState::Cancelled {
            amount,
            reference,
            by,
        } => {
            let why = match by {
                CancelledBy::Customer => CancelledByYou,
                CancelledBy::Kiosk => CancelledByKiosk,
            };
            Screen::new(Tone::Warning, Icon::Ban, CancelledTitle, lang)
                .amount(amount.display(lang))
                .line(why, lang)
                .line(NothingCharged, lang)
                .line(ScanToTryAgain, lang)
                .reference(lang, reference)
        }
        KioskState::TimedOut { amount, reference } => {
            Screen::new(Tone::Warning, Icon::Clock, TimedOutTitle, lang)
                .amount(amount.display(lang))
                .line(NotCompletedInTime, lang)
                .line(NothingCharged, lang)
                .line(ScanToTryAgain, lang)
                .reference(lang, reference)
        }
        KioskState::Failed {
            amount,
            reference,
            kind,
        } => {
            let screen = Screen::new(Tone::Error, Icon::Exclamation, FailedTitle, lang)
                .amount(amount.display(lang));
            let screen = match kind {
                FailKind::Technical => screen.line(TechnicalError, lang),
                FailKind::TerminalOffline => screen.line(TerminalDidNotRespond, lang),
                FailKind::Rejected => screen.line(CouldNotStart, lang),
            };
            let advice = match kind {
                FailKind::Technical | FailKind::TerminalOffline => TryAgainSoon,
                FailKind::Rejected => ContactStaff,
            };
            screen
                .line(NothingCharged, lang)
                .line(advice, lang)
                .reference(lang, reference)
        }
        KioskState::Conflict { amount, reference } => {
            Screen::new(Tone::Error, Icon::Exclamation, ConflictTitle, lang)
                .amount(amount.display(lang))
                .line(NothingMoreCharged, lang)
                .line(AskStaffWithReference, lang)
                .reference(lang, reference)
        }
        KioskState::Checking { reference } => {
            Screen::new(Tone::Warning, Icon::Hourglass, CheckingTitle, lang)
                .line(CheckingWhether, lang)
                .line(DoNotPayAgain, lang)
                .line(QuoteReference, lang)
                .reference(lang, reference)
                .busy()
        }
        KioskState::OutOfService { code } => {
            let mut screen = Screen::new(Tone::Error, Icon::Exclamation, OutOfServiceTitle, lang)
                .line(NoPaymentsNow, lang)
                .line(ContactStaff, lang);
            screen.footer = Some(text::error_code(lang, &clip(code)));
            screen
        }
        KioskState::Technician => {
            let mut screen = Screen::new(Tone::Warning, Icon::Wrench, TechnicianTitle, lang)
                .line(BeingServiced, lang)
                .line(BackSoon, lang);
            screen.footer = Some(TechnicianMode.text(lang).to_string());
            screen
        }
    }
}

/// A receipt link template from `display.receipt_url`, e.g.
/// `https://receipts.example.no/r/{transaction_id}`.
///
/// Checked once when the config is read, so a typo shows up at start-up instead of as a QR code
/// that leads nowhere on a customer's phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptUrl(String);

/// The placeholder a [`ReceiptUrl`] must contain.
pub const TRANSACTION_ID: &str = "{transaction_id}";

/// The longest receipt link accepted: a QR code of this length still has modules of two pixels
/// or more on a 240-pixel-wide panel, which a phone reads from arm's length.
pub const MAX_RECEIPT_URL: usize = 120;

impl ReceiptUrl {
    /// Checks a template: `http(s)://`, one `{transaction_id}`, printable ASCII, short enough.
    pub fn parse(template: &str) -> Result<ReceiptUrl, String> {
        let ok_scheme = template.starts_with("https://") || template.starts_with("http://");
        if !ok_scheme {
            return Err("a link starting with https:// (or http://)".into());
        }
        if template.matches(TRANSACTION_ID).count() != 1 {
            return Err(format!("a link containing {TRANSACTION_ID} exactly once"));
        }
        if !template.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a link of printable ASCII without spaces".into());
        }
        if template.len() > MAX_RECEIPT_URL - 40 {
            return Err(format!(
                "a link of at most {} characters before the id is filled in",
                MAX_RECEIPT_URL - 40
            ));
        }
        Ok(ReceiptUrl(template.to_string()))
    }

    /// The link for one transaction; the id is percent-encoded so that it cannot change the
    /// link's structure. `None` when the result would be too long for a readable QR code.
    pub fn for_transaction(&self, transaction_id: &str) -> Option<String> {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        const KEEP: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        let id = utf8_percent_encode(transaction_id, KEEP).to_string();
        let url = self.0.replacen(TRANSACTION_ID, &id, 1);
        (url.len() <= MAX_RECEIPT_URL).then_some(url)
    }
}

impl Screen {
    /// Adds the receipt QR code to an approved screen, if the kiosk has a receipt link.
    ///
    /// Any other screen is returned unchanged, so callers apply it to every screen.
    pub fn with_receipt(
        mut self,
        state: &KioskState,
        receipt: Option<&ReceiptUrl>,
        lang: Language,
    ) -> Screen {
        if let (KioskState::Approved { transaction_id, .. }, Some(receipt)) = (state, receipt) {
            if let Some(url) = receipt.for_transaction(transaction_id) {
                self.qr = Some(url);
                // Right after the thanks: lines are dropped from the end when space runs out,
                // and the card summary matters less than knowing what the code is for.
                let at = self.lines.len().min(1);
                self.lines
                    .insert(at, Phrase::ScanForReceipt.text(lang).to_string());
            }
        }
        self
    }
}

/// When the screen for `state` next looks different by itself, if it ever does: the next
/// second boundary of a countdown, or the next frame of the activity indicator one second after
/// `now`. `None` means the display can sleep until the state changes.
pub fn next_change(state: &KioskState, lang: Language, now: Instant) -> Option<Instant> {
    if let KioskState::WaitingForCard { deadline, .. } = state {
        let seconds = seconds_left(*deadline, now);
        // The shown number drops from n to n-1 exactly when n-1 seconds are left.
        return (seconds > 0)
            .then(|| deadline.checked_sub(Duration::from_secs(seconds - 1)))
            .flatten();
    }
    screen_for(state, lang, now)
        .activity
        .map(|_| now + Duration::from_secs(1))
}

/// Whole seconds left until `deadline`, rounded up.
fn seconds_left(deadline: Instant, now: Instant) -> u64 {
    let left = deadline.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

/// Cuts text that came from outside (terminal, API, scanner) to a length that fits a screen.
fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_FOREIGN_CHARS {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(MAX_FOREIGN_CHARS - 3).collect();
        cut.push_str("...");
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};

    fn waiting(deadline: Instant) -> KioskState {
        KioskState::WaitingForCard {
            amount: Money::new(39900, Currency::NOK),
            reference: "r".into(),
            deadline,
        }
    }

    #[test]
    fn countdown_rounds_up_and_stops_at_zero() {
        let now = Instant::now();
        let state = waiting(now + Duration::from_millis(45_200));
        let screen = screen_for(&state, Language::Nb, now);
        let countdown = screen.countdown.clone().unwrap();
        assert_eq!(countdown.seconds, 46);
        assert_eq!(countdown.text, "46 sekunder igjen");
        assert_eq!(
            next_change(&state, Language::Nb, now),
            Some(now + Duration::from_millis(200))
        );

        let late = now + Duration::from_secs(60);
        let screen = screen_for(&state, Language::En, late);
        assert_eq!(screen.countdown.unwrap().seconds, 0);
        assert_eq!(next_change(&state, Language::En, late), None);
    }

    #[test]
    fn only_busy_screens_tick() {
        let now = Instant::now();
        assert_eq!(next_change(&KioskState::Idle, Language::Nb, now), None);
        let checking = KioskState::Checking {
            reference: "r".into(),
        };
        assert_eq!(
            next_change(&checking, Language::Nb, now),
            Some(now + Duration::from_secs(1))
        );
    }

    #[test]
    fn outside_text_is_clipped() {
        let long = "x".repeat(100);
        let state = KioskState::Unavailable {
            reason: UnavailableReason::TerminalNotActive(long),
        };
        let screen = screen_for(&state, Language::En, Instant::now());
        let footer = screen.footer.unwrap();
        assert!(footer.ends_with("..."));
        assert!(footer.chars().count() < 60);
    }

    #[test]
    fn receipt_links_are_checked_and_only_go_on_the_approved_screen() {
        for bad in [
            "ftp://x/{transaction_id}",
            "https://x/r",
            "https://x/{transaction_id}/{transaction_id}",
            "https://x/r?id={transaction_id} ",
        ] {
            assert!(ReceiptUrl::parse(bad).is_err(), "{bad}");
        }
        let url = ReceiptUrl::parse("https://r.example.no/k/{transaction_id}?s=1").unwrap();
        assert_eq!(
            url.for_transaction("T1.a/b?c").as_deref(),
            Some("https://r.example.no/k/T1.a%2Fb%3Fc?s=1")
        );
        assert_eq!(url.for_transaction(&"x".repeat(200)), None);

        let now = Instant::now();
        let approved = KioskState::Approved {
            amount: Money::new(100, Currency::NOK),
            reference: "r".into(),
            transaction_id: "T1.abc".into(),
            card: None,
        };
        let screen = screen_for(&approved, Language::En, now).with_receipt(
            &approved,
            Some(&url),
            Language::En,
        );
        assert_eq!(
            screen.qr.as_deref(),
            Some("https://r.example.no/k/T1.abc?s=1")
        );
        assert!(screen.lines.iter().any(|l| l.contains("receipt")));
        let idle = screen_for(&KioskState::Idle, Language::En, now);
        assert_eq!(
            idle.clone()
                .with_receipt(&KioskState::Idle, Some(&url), Language::En),
            idle
        );
    }
}
