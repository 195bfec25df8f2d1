//! A setting a subsystem refused, in the words a technician fixes it with.
//!
//! Each subsystem parses its own config section ([`crate::input::InputConfig`],
//! [`crate::display::DisplayConfig`], …) and says what is wrong with a value it cannot use. The
//! config file's loader turns that into its own error; the subsystem does not need to know
//! about the file, and the file does not need to know each subsystem's rules.

use std::fmt;

/// A value a key cannot take: the dotted key, the value as written (never a secret), and what
/// would be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted key, e.g. `input.gap_ms`.
    pub key: &'static str,
    /// The value as written, quoted or described (`(not set)`, `(table)`).
    pub value: String,
    /// What would be accepted, e.g. `5 to 2000 milliseconds`.
    pub expected: String,
}

impl Invalid {
    /// A refusal of `value`, shown quoted as the file spells a string.
    pub fn quoted(
        key: &'static str,
        value: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Invalid {
            key,
            value: format!("{:?}", value.to_string()),
            expected: expected.into(),
        }
    }

    /// A refusal of `value`, shown as is (a number, a pin, a description).
    pub fn plain(key: &'static str, value: impl fmt::Display, expected: impl Into<String>) -> Self {
        Invalid {
            key,
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {}: expected {}",
            self.key, self.value, self.expected
        )
    }
}

impl std::error::Error for Invalid {}
