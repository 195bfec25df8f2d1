//! Dintero's account and terminal ids, parsed once so that code holding one never checks it.
//!
//! A terminal id is the account id, `-T`, and four digits (`T12345678-T0001`): the account it
//! belongs to is part of it, which is how `kioskpay check` catches a kiosk configured with one
//! account's credentials and another account's terminal before any card is presented.

use std::fmt;

/// `T` + 8 digits (a sandbox account) or `P` + 8 digits (production).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountId(String);

impl AccountId {
    /// Parses an account id; the error says what a valid one looks like.
    pub fn parse(text: &str) -> Result<AccountId, String> {
        let ok = text.len() == 9
            && matches!(text.as_bytes()[0], b'T' | b'P')
            && text[1..].bytes().all(|b| b.is_ascii_digit());
        if ok {
            Ok(AccountId(text.to_string()))
        } else {
            Err("T followed by 8 digits (sandbox) or P followed by 8 digits (production)".into())
        }
    }

    /// Whether this is a sandbox (test) account: no real money moves.
    pub fn is_sandbox(&self) -> bool {
        self.0.starts_with('T')
    }

    /// The id as Dintero writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A terminal registered to an account: `<account id>-T` + 4 digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TerminalId(String);

impl TerminalId {
    /// Parses the id of a terminal of `account`; the error says what a valid one looks like.
    pub fn parse(text: &str, account: &AccountId) -> Result<TerminalId, String> {
        let ok = text.len() == 15
            && text.starts_with(account.as_str())
            && text.as_bytes()[9..11] == *b"-T"
            && text[11..].bytes().all(|b| b.is_ascii_digit());
        if ok {
            Ok(TerminalId(text.to_string()))
        } else {
            Err(format!(
                "the terminal id from registration, {account}-T followed by 4 digits"
            ))
        }
    }

    /// The id as Dintero writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_a_letter_for_the_environment_and_eight_digits() {
        let sandbox = AccountId::parse("T12345678").unwrap();
        assert!(sandbox.is_sandbox());
        assert!(!AccountId::parse("P12345678").unwrap().is_sandbox());
        for bad in [
            "",
            "T1234567",
            "T123456789",
            "X12345678",
            "T1234567a",
            "t12345678",
        ] {
            assert!(AccountId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_terminal_id_belongs_to_its_account() {
        let account = AccountId::parse("T12345678").unwrap();
        assert_eq!(
            TerminalId::parse("T12345678-T0001", &account)
                .unwrap()
                .as_str(),
            "T12345678-T0001"
        );
        // The last one puts a two-byte character where `-T` belongs: no panic on a char boundary.
        for bad in [
            "T87654321-T0001",
            "T12345678-T001",
            "T12345678-X0001",
            "T0001",
            "",
            "T12345678-\u{f8}001",
        ] {
            let err = TerminalId::parse(bad, &account).unwrap_err();
            assert!(
                err.contains("T12345678-T followed by 4 digits"),
                "{bad:?}: {err}"
            );
        }
    }
}
