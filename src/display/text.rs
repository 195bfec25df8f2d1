//! Every word the customer reads, in Norwegian Bokmål and English.
//!
//! One place for all wording so that a translator (or a shop owner who wants "handlekurv" instead
//! of "kurv") edits one file, and so that both languages are kept complete by the compiler: every
//! [`Phrase`] must have both spellings or the match is not exhaustive.
//!
//! The wording follows three rules that matter at an unattended kiosk:
//! - say what happened in the customer's words ("the card was declined", never "PAY_FAILED");
//! - after every failed or interrupted payment say that nothing was charged and what to do next;
//! - never blame the customer, and point at staff only when the customer cannot fix it.
//!
//! Texts stay inside Latin-1 (æøå included, no typographic dashes or ellipses) because the panel
//! fonts carry Latin-1 only.

use crate::money::{Language, Money};

/// A fixed customer text. Texts with numbers or names in them are functions below instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phrase {
    /// Title while the daemon starts.
    StartingTitle,
    /// Body while the daemon starts.
    StartingBody,
    /// Title of the idle screen.
    WelcomeTitle,
    /// How to start a payment, on the idle screen.
    ScanToPay,
    /// What comes after scanning, on the idle screen.
    ThenPayByCard,
    /// Title when card payment is unavailable.
    UnavailableTitle,
    /// Dintero cannot be reached.
    ServiceUnreachable,
    /// The kiosk's credentials are refused.
    NeedsStaffSetup,
    /// The terminal is not active.
    TerminalNotReady,
    /// The terminal does not pick payments up.
    TerminalNotResponding,
    /// Advice: try again shortly.
    TryAgainSoon,
    /// Advice: ask staff.
    ContactStaff,
    /// Title when a scanned cart is refused.
    RefusedTitle,
    /// A payment is already running.
    AlreadyPaying,
    /// Advice when already paying.
    FinishCurrentFirst,
    /// Card payment is unavailable right now (refusal).
    NotAvailableNow,
    /// The cart's amount is zero.
    NothingToPay,
    /// The cart's amount is above the kiosk's maximum.
    AmountTooLarge,
    /// The cart could not be read.
    CodeUnreadable,
    /// Advice: scan again.
    ScanAgain,
    /// A barcode that does not say what to pay (a product number, a weight label).
    NotAPaymentCode,
    /// Advice after scanning something that is not a payment code.
    ScanPaymentCode,
    /// A payment code of a kind this kiosk is not set up for.
    CodeNotAccepted,
    /// The code's amount is in another currency.
    CodeWrongCurrency,
    /// The code's amount cannot be charged (zero, finer than one øre, too large).
    CodeAmountInvalid,
    /// The code's validity has run out.
    CodeExpired,
    /// Advice after an expired code.
    AskForNewCode,
    /// The code was paid before.
    CodeAlreadyPaid,
    /// The code's signature is wrong; worded without accusing anyone.
    CodeNotValid,
    /// Title while the session is created.
    CreatingTitle,
    /// Body while the session is created.
    TerminalGettingReady,
    /// Title while the terminal prompts for the card.
    WaitingTitle,
    /// The single most important instruction of the whole display.
    FollowTerminal,
    /// How to present the card.
    TapOrInsert,
    /// Title while the payment completes.
    ProcessingTitle,
    /// Body while the payment completes.
    PleaseWaitDontLeave,
    /// Title of the approved screen.
    ApprovedTitle,
    /// Thanks on the approved screen.
    ThankYou,
    /// Title when the issuer declined.
    DeclinedTitle,
    /// Body when the issuer declined.
    BankDeclined,
    /// Advice after a plain decline.
    TryOtherCardOrBank,
    /// Title when the account lacks funds.
    InsufficientTitle,
    /// Body when the account lacks funds.
    NotEnoughMoney,
    /// Advice after insufficient funds.
    TryOtherCard,
    /// Title after a cancel.
    CancelledTitle,
    /// The customer cancelled on the terminal.
    CancelledByYou,
    /// The kiosk cancelled.
    CancelledByKiosk,
    /// Title after a timeout.
    TimedOutTitle,
    /// Body after a timeout.
    NotCompletedInTime,
    /// Title after a technical failure.
    FailedTitle,
    /// Technical error at terminal or acquirer.
    TechnicalError,
    /// The terminal never picked the payment up.
    TerminalDidNotRespond,
    /// Dintero refused to create the payment.
    CouldNotStart,
    /// Reassurance after every payment that did not go through.
    NothingCharged,
    /// Advice after a payment that did not go through.
    ScanToTryAgain,
    /// Title while the outcome of a payment is unknown.
    CheckingTitle,
    /// Body while the outcome is unknown.
    CheckingWhether,
    /// The one thing the customer must not do while the outcome is unknown.
    DoNotPayAgain,
    /// Title when a payment could not be confirmed (another payment holds its reference).
    ConflictTitle,
    /// The promise after an unconfirmed payment: the kiosk takes nothing more.
    NothingMoreCharged,
    /// What the customer does after an unconfirmed payment.
    AskStaffWithReference,
    /// Why the reference is on screen.
    QuoteReference,
    /// Title when the barcode scanner does not work.
    ScannerTitle,
    /// Body when the barcode scanner does not work.
    ScannerBroken,
    /// Title when the kiosk is out of service.
    OutOfServiceTitle,
    /// Body when the kiosk is out of service.
    NoPaymentsNow,
    /// Title while a technician works on the kiosk.
    TechnicianTitle,
    /// Body while a technician works on the kiosk.
    BeingServiced,
    /// Reassurance while a technician works on the kiosk.
    BackSoon,
    /// Staff-facing footer in technician mode.
    TechnicianMode,
    /// Caption of the receipt QR code on the approved screen.
    ScanForReceipt,
}

impl Phrase {
    /// The phrase in `lang`.
    pub fn text(self, lang: Language) -> &'static str {
        use Language::{En, Nb};
        use Phrase::*;
        match (self, lang) {
            (StartingTitle, Nb) => "Starter opp",
            (StartingTitle, En) => "Starting up",
            (StartingBody, Nb) => "Kiosken gjør seg klar. Vent litt.",
            (StartingBody, En) => "The kiosk is getting ready. Please wait.",
            (WelcomeTitle, Nb) => "Velkommen",
            (WelcomeTitle, En) => "Welcome",
            (ScanToPay, Nb) => "Skann koden din for å betale.",
            (ScanToPay, En) => "Scan your code to pay.",
            (ThenPayByCard, Nb) => "Deretter betaler du med kort på terminalen.",
            (ThenPayByCard, En) => "Then pay by card on the terminal.",
            (UnavailableTitle, Nb) => "Kortbetaling er ikke mulig nå",
            (UnavailableTitle, En) => "Card payment unavailable",
            (ServiceUnreachable, Nb) => "Vi får ikke kontakt med betalingstjenesten.",
            (ServiceUnreachable, En) => "We cannot reach the payment service.",
            (NeedsStaffSetup, Nb) => "Kiosken må settes opp av personalet.",
            (NeedsStaffSetup, En) => "The kiosk needs attention from staff.",
            (TerminalNotReady, Nb) => "Kortterminalen er ikke klar.",
            (TerminalNotReady, En) => "The card terminal is not ready.",
            (TerminalNotResponding, Nb) => "Kortterminalen svarer ikke.",
            (TerminalNotResponding, En) => "The card terminal is not responding.",
            (TryAgainSoon, Nb) => "Prøv igjen om litt.",
            (TryAgainSoon, En) => "Please try again in a moment.",
            (ContactStaff, Nb) => "Kontakt personalet.",
            (ContactStaff, En) => "Please contact staff.",
            (RefusedTitle, Nb) => "Kan ikke starte betaling",
            (RefusedTitle, En) => "Cannot start payment",
            (AlreadyPaying, Nb) => "En betaling pågår allerede.",
            (AlreadyPaying, En) => "A payment is already in progress.",
            (FinishCurrentFirst, Nb) => "Fullfør den på terminalen først.",
            (FinishCurrentFirst, En) => "Finish it on the terminal first.",
            (NotAvailableNow, Nb) => "Kortbetaling er ikke mulig akkurat nå.",
            (NotAvailableNow, En) => "Card payment is not possible right now.",
            (NothingToPay, Nb) => "Beløpet er null, så det er ingenting å betale.",
            (NothingToPay, En) => "The amount is zero, so there is nothing to pay.",
            (AmountTooLarge, Nb) => "Beløpet er høyere enn kiosken tar imot.",
            (AmountTooLarge, En) => "The amount is higher than this kiosk accepts.",
            (CodeUnreadable, Nb) => "Koden kunne ikke leses.",
            (CodeUnreadable, En) => "The code could not be read.",
            (ScanAgain, Nb) => "Prøv å skanne den igjen.",
            (ScanAgain, En) => "Please scan it again.",
            (NotAPaymentCode, Nb) => "Denne koden er ikke en betalingskode.",
            (NotAPaymentCode, En) => "This code is not a payment code.",
            (ScanPaymentCode, Nb) => "Skann betalingskoden i stedet.",
            (ScanPaymentCode, En) => "Please scan the payment code instead.",
            (CodeNotAccepted, Nb) => "Denne typen kode tas ikke imot her.",
            (CodeNotAccepted, En) => "This kind of code is not accepted here.",
            (CodeWrongCurrency, Nb) => "Koden har feil valuta.",
            (CodeWrongCurrency, En) => "The code is in the wrong currency.",
            (CodeAmountInvalid, Nb) => "Beløpet på koden kan ikke betales her.",
            (CodeAmountInvalid, En) => "The amount on the code cannot be paid here.",
            (CodeExpired, Nb) => "Koden er utløpt.",
            (CodeExpired, En) => "The code has expired.",
            (AskForNewCode, Nb) => "Be om en ny kode.",
            (AskForNewCode, En) => "Please ask for a new code.",
            (CodeAlreadyPaid, Nb) => "Denne koden er allerede betalt.",
            (CodeAlreadyPaid, En) => "This code has already been paid.",
            (CodeNotValid, Nb) => "Koden er ikke gyldig.",
            (CodeNotValid, En) => "The code is not valid.",
            (CreatingTitle, Nb) => "Starter betalingen",
            (CreatingTitle, En) => "Starting payment",
            (TerminalGettingReady, Nb) => "Kortterminalen gjør seg klar.",
            (TerminalGettingReady, En) => "The card terminal is getting ready.",
            (WaitingTitle, Nb) => "Betal på kortterminalen",
            (WaitingTitle, En) => "Pay on the card terminal",
            (FollowTerminal, Nb) => "Følg instruksjonene på kortterminalen.",
            (FollowTerminal, En) => "Follow the instructions on the card terminal.",
            (TapOrInsert, Nb) => "Hold kortet mot terminalen eller sett det inn.",
            (TapOrInsert, En) => "Tap or insert your card.",
            (ProcessingTitle, Nb) => "Behandler betalingen",
            (ProcessingTitle, En) => "Processing payment",
            (PleaseWaitDontLeave, Nb) => "Vent litt, ikke gå ennå.",
            (PleaseWaitDontLeave, En) => "Please wait, do not leave yet.",
            (ApprovedTitle, Nb) => "Betalingen er godkjent",
            (ApprovedTitle, En) => "Payment approved",
            (ThankYou, Nb) => "Takk for handelen!",
            (ThankYou, En) => "Thank you!",
            (DeclinedTitle, Nb) => "Kortet ble avvist",
            (DeclinedTitle, En) => "Card declined",
            (BankDeclined, Nb) => "Banken godkjente ikke betalingen.",
            (BankDeclined, En) => "Your bank did not approve the payment.",
            (TryOtherCardOrBank, Nb) => "Prøv et annet kort, eller kontakt banken din.",
            (TryOtherCardOrBank, En) => "Try another card or contact your bank.",
            (InsufficientTitle, Nb) => "Ikke nok dekning",
            (InsufficientTitle, En) => "Insufficient funds",
            (NotEnoughMoney, Nb) => "Det er ikke nok penger på kontoen.",
            (NotEnoughMoney, En) => "There is not enough money on the account.",
            (TryOtherCard, Nb) => "Prøv et annet kort.",
            (TryOtherCard, En) => "Try another card.",
            (CancelledTitle, Nb) => "Betalingen er avbrutt",
            (CancelledTitle, En) => "Payment cancelled",
            (CancelledByYou, Nb) => "Betalingen ble avbrutt på terminalen.",
            (CancelledByYou, En) => "The payment was cancelled on the terminal.",
            (CancelledByKiosk, Nb) => "Betalingen ble avbrutt av kiosken.",
            (CancelledByKiosk, En) => "The payment was cancelled by the kiosk.",
            (TimedOutTitle, Nb) => "Tiden gikk ut",
            (TimedOutTitle, En) => "Time ran out",
            (NotCompletedInTime, Nb) => "Betalingen ble ikke fullført i tide.",
            (NotCompletedInTime, En) => "The payment was not completed in time.",
            (FailedTitle, Nb) => "Betalingen feilet",
            (FailedTitle, En) => "Payment failed",
            (TechnicalError, Nb) => "Det oppstod en teknisk feil.",
            (TechnicalError, En) => "A technical error occurred.",
            (TerminalDidNotRespond, Nb) => "Kortterminalen svarte ikke.",
            (TerminalDidNotRespond, En) => "The card terminal did not respond.",
            (CouldNotStart, Nb) => "Betalingen kunne ikke startes.",
            (CouldNotStart, En) => "The payment could not be started.",
            (NothingCharged, Nb) => "Ingenting er trukket fra kortet.",
            (NothingCharged, En) => "Nothing has been charged.",
            (ScanToTryAgain, Nb) => "Skann koden igjen for å prøve på nytt.",
            (ScanToTryAgain, En) => "Scan the code again to try again.",
            (CheckingTitle, Nb) => "Sjekker betalingen",
            (CheckingTitle, En) => "Checking your payment",
            (CheckingWhether, Nb) => "Vi sjekker om betalingen gikk gjennom.",
            (CheckingWhether, En) => "We are checking whether your payment went through.",
            (DoNotPayAgain, Nb) => "Ikke betal på nytt.",
            (DoNotPayAgain, En) => "Please do not pay again.",
            (ConflictTitle, Nb) => "Kunne ikke bekrefte",
            (ConflictTitle, En) => "Could not confirm",
            (NothingMoreCharged, Nb) => "Ingenting mer blir trukket.",
            (NothingMoreCharged, En) => "Nothing more will be charged.",
            (AskStaffWithReference, Nb) => "Kontakt personalet og oppgi referansen.",
            (AskStaffWithReference, En) => "Please ask staff and quote the reference.",
            (QuoteReference, Nb) => "Oppgi referansen hvis du trenger hjelp.",
            (QuoteReference, En) => "Quote the reference if you need help.",
            (ScannerTitle, Nb) => "Skanneren virker ikke",
            (ScannerTitle, En) => "Scanner not working",
            (ScannerBroken, Nb) => "Kiosken kan ikke lese koder akkurat nå.",
            (ScannerBroken, En) => "The kiosk cannot read codes right now.",
            (OutOfServiceTitle, Nb) => "Ute av drift",
            (OutOfServiceTitle, En) => "Out of service",
            (NoPaymentsNow, Nb) => "Kiosken kan ikke ta imot betaling nå.",
            (NoPaymentsNow, En) => "This kiosk cannot take payments right now.",
            (TechnicianTitle, Nb) => "Vedlikehold pågår",
            (TechnicianTitle, En) => "Maintenance",
            (BeingServiced, Nb) => "Kiosken er under vedlikehold.",
            (BeingServiced, En) => "This kiosk is being serviced.",
            (BackSoon, Nb) => "Den er snart i drift igjen.",
            (BackSoon, En) => "It will be back in service shortly.",
            (TechnicianMode, Nb) => "Teknikermodus",
            (TechnicianMode, En) => "Technician mode",
            (ScanForReceipt, Nb) => "Skann QR-koden for kvittering.",
            (ScanForReceipt, En) => "Scan the QR code for your receipt.",
        }
    }
}

/// "Reference: …", the line a customer reads out to staff or support.
pub fn reference(lang: Language, reference: &str) -> String {
    match lang {
        Language::Nb => format!("Referanse: {reference}"),
        Language::En => format!("Reference: {reference}"),
    }
}

/// The card the payment was made with, as the terminal summarised it ("Visa **** 4242").
pub fn card(lang: Language, card: &str) -> String {
    match lang {
        Language::Nb => format!("Kort: {card}"),
        Language::En => format!("Card: {card}"),
    }
}

/// The largest amount this kiosk takes, after a refusal for a too large amount.
pub fn max_amount(lang: Language, max: &Money) -> String {
    match lang {
        Language::Nb => format!("Høyeste beløp er {}.", max.display(lang)),
        Language::En => format!("The maximum is {}.", max.display(lang)),
    }
}

/// The cart was in another currency than the kiosk charges in.
pub fn wrong_currency(lang: Language, given: &str) -> String {
    match lang {
        Language::Nb => format!("Koden har feil valuta ({given})."),
        Language::En => format!("The code is in the wrong currency ({given})."),
    }
}

/// The terminal status Dintero reported, for staff reading the unavailable screen.
pub fn terminal_status(lang: Language, status: &str) -> String {
    match lang {
        Language::Nb => format!("Terminalstatus: {status}"),
        Language::En => format!("Terminal status: {status}"),
    }
}

/// A short code a technician looks up, shown as small print on the out-of-service screen.
pub fn error_code(lang: Language, code: &str) -> String {
    match lang {
        Language::Nb => format!("Feilkode: {code}"),
        Language::En => format!("Error code: {code}"),
    }
}

/// Seconds left before the kiosk gives up waiting for the card.
///
/// Spelled out rather than `0:45` because a bare number next to an amount can be misread as money.
pub fn seconds_left(lang: Language, seconds: u64) -> String {
    match (lang, seconds) {
        (Language::Nb, 1) => "1 sekund igjen".to_string(),
        (Language::Nb, n) => format!("{n} sekunder igjen"),
        (Language::En, 1) => "1 second left".to_string(),
        (Language::En, n) => format!("{n} seconds left"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    #[test]
    fn norwegian_uses_real_letters_and_latin1_only() {
        let nb: Vec<&str> = [
            Phrase::FollowTerminal,
            Phrase::ScanToPay,
            Phrase::TryAgainSoon,
            Phrase::NotEnoughMoney,
        ]
        .iter()
        .map(|p| p.text(Language::Nb))
        .collect();
        assert!(nb.iter().any(|t| t.contains('ø')));
        assert!(nb.iter().any(|t| t.contains('å')));
        assert!(nb.iter().all(|t| t.chars().all(|c| (c as u32) < 0x100)));
    }

    #[test]
    fn counts_and_amounts_read_naturally() {
        assert_eq!(seconds_left(Language::Nb, 1), "1 sekund igjen");
        assert_eq!(seconds_left(Language::Nb, 45), "45 sekunder igjen");
        assert_eq!(seconds_left(Language::En, 2), "2 seconds left");
        let max = Money::new(500000, Currency::NOK);
        assert_eq!(
            max_amount(Language::Nb, &max),
            "Høyeste beløp er kr\u{a0}5\u{a0}000,00."
        );
        assert_eq!(
            max_amount(Language::En, &max),
            "The maximum is NOK\u{a0}5,000.00."
        );
    }
}
