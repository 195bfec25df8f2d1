//! AIM symbology identifiers: the three characters a scanner puts before the data.
//!
//! With "transmit AIM ID" switched on (most scanners have it as a configuration barcode), every
//! scan starts with `]` + a symbology letter + a modifier digit. The identifier is the only
//! reliable way to tell GS1 data from plain text: a GS1-128 symbol and a plain Code 128 symbol
//! can carry the same characters, and the scanner never transmits the leading FNC1 that makes the
//! first one GS1. kioskpay strips the identifier and uses it to pick the parser; without one, it
//! falls back to looking at the data (see [`super::decode`]).
//!
//! | identifier | symbol | kioskpay reads it as |
//! |---|---|---|
//! | `]C1` | GS1-128 | GS1 element string |
//! | `]d2` | GS1 DataMatrix | GS1 element string |
//! | `]Q3` | GS1 QR Code | GS1 element string |
//! | `]e0` | GS1 DataBar | GS1 element string |
//! | `]J1` | GS1 DotCode | GS1 element string |
//! | `]E0` | EAN-13 / UPC-A | EAN-13 |
//! | `]E4`, `]E1`-`]E3` | EAN-8, add-ons | refused (product codes) |
//! | `]C0`, `]Q1`, `]d1`, anything else | plain Code 128, QR, DataMatrix, ... | text (Digital Link URI, signed code, plain amount) |

/// What the symbology identifier says about the data after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AimKind {
    /// GS1 Application Identifier data, FNC1 separators transmitted as GS (0x1D).
    Gs1,
    /// The 13 digits of an EAN-13 (or a UPC-A with a leading 0).
    Ean13,
    /// EAN-8 or an EAN/UPC add-on: a product code, never an amount payable.
    OtherEanUpc,
    /// A symbol carrying text, which kioskpay looks at to find the format.
    Text,
}

/// A parsed AIM symbology identifier such as `]C1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aim {
    /// The symbology letter (`C` Code 128, `Q` QR, `d` DataMatrix, `E` EAN/UPC, `e` DataBar ...).
    pub symbology: u8,
    /// The modifier character, which for several symbologies says "GS1".
    pub modifier: u8,
}

impl Aim {
    /// Splits a scan into its identifier (if it starts with one) and the data.
    ///
    /// An identifier is exactly `]`, an ASCII letter and an ASCII alphanumeric modifier; anything
    /// else at the start is data, so a plain scan that happens to begin with `]` is not eaten.
    pub fn strip(raw: &[u8]) -> (Option<Aim>, &[u8]) {
        match raw {
            [b']', symbology, modifier, rest @ ..]
                if symbology.is_ascii_alphabetic() && modifier.is_ascii_alphanumeric() =>
            {
                (
                    Some(Aim {
                        symbology: *symbology,
                        modifier: *modifier,
                    }),
                    rest,
                )
            }
            _ => (None, raw),
        }
    }

    /// What kind of data follows this identifier.
    pub fn kind(self) -> AimKind {
        match (self.symbology, self.modifier) {
            (b'C', b'1') | (b'd', b'2') | (b'Q', b'3') | (b'e', b'0') | (b'J', b'1') => {
                AimKind::Gs1
            }
            (b'E', b'0') => AimKind::Ean13,
            (b'E', _) => AimKind::OtherEanUpc,
            _ => AimKind::Text,
        }
    }

    /// The identifier as transmitted, `]C1`, for log lines.
    pub fn text(self) -> String {
        format!(
            "]{}{}",
            char::from(self.symbology),
            char::from(self.modifier)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_and_classifies() {
        let cases: &[(&[u8], Option<AimKind>, &[u8])] = &[
            (
                b"]C14157080003824349",
                Some(AimKind::Gs1),
                b"4157080003824349",
            ),
            (b"]d2x", Some(AimKind::Gs1), b"x"),
            (b"]Q3x", Some(AimKind::Gs1), b"x"),
            (b"]e0x", Some(AimKind::Gs1), b"x"),
            (b"]E07038010054471", Some(AimKind::Ean13), b"7038010054471"),
            (b"]E412345670", Some(AimKind::OtherEanUpc), b"12345670"),
            (b"]C0399.00", Some(AimKind::Text), b"399.00"),
            (b"]Q1https://x", Some(AimKind::Text), b"https://x"),
            (b"]d1KP1.", Some(AimKind::Text), b"KP1."),
            (b"399.00", None, b"399.00"),
            (b"]", None, b"]"),
            (b"]C", None, b"]C"),
            (b"]1C", None, b"]1C"),
            (b"", None, b""),
        ];
        for (raw, kind, rest) in cases {
            let (aim, data) = Aim::strip(raw);
            assert_eq!(aim.map(Aim::kind), *kind, "{raw:?}");
            assert_eq!(data, *rest, "{raw:?}");
        }
        assert_eq!(Aim::strip(b"]C1").0.map(Aim::text).as_deref(), Some("]C1"));
    }
}
