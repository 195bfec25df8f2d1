//! A cart: what the input unit asks the kiosk to charge.
//!
//! Inputs (scanner, GPIO, console) only ever produce carts; they never talk to Dintero. The payment
//! flow decides whether a cart is accepted (one payment at a time, `max_amount`, health gate).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Where a cart came from: logged with every payment so that a technician can tell a scanned
/// code from a button press.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CartSource {
    /// A barcode scanner on a serial line or USB CDC-ACM.
    Serial,
    /// Lines on standard input (development and the demo).
    Stdin,
    /// GPIO preset buttons or a pulse train.
    Gpio,
    /// A technician's test payment from the console.
    Console,
    /// The scripted demo.
    Demo,
}

impl fmt::Display for CartSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CartSource::Serial => "serial",
            CartSource::Stdin => "stdin",
            CartSource::Gpio => "gpio",
            CartSource::Console => "console",
            CartSource::Demo => "demo",
        })
    }
}

/// A total to charge, with the merchant's own reference when the code carried one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    /// The total, in minor units.
    pub amount: Money,
    /// The cart's own reference (a KID, an order number); sent as `order.merchant_reference_2`.
    pub reference: Option<String>,
    /// The input that produced the cart.
    pub source: CartSource,
}
