//! The `POST /v1/sessions-profile` request for a payment: the order, its one line and its VAT.

use super::*;

/// The VAT included in `amount` at `percent`, rounded half up, integer arithmetic only.
pub fn vat_included(amount: u64, percent: u32) -> u64 {
    let amount = u128::from(amount);
    let p = u128::from(percent);
    let vat = (amount * p * 2 + (100 + p)) / (2 * (100 + p));
    u64::try_from(vat).unwrap_or(u64::MAX)
}

impl<G: Gateway> Flow<G> {
    pub(super) fn session_request(&self, payment: &Payment) -> SessionProfileRequest {
        let amount = payment.amount.minor;
        let vat_amount = vat_included(amount, self.config.vat_percent);
        let description = match &payment.cart_reference {
            Some(r) => format!("Kiosk {} cart {r}", self.config.kiosk_id),
            None => format!("Kiosk {} purchase", self.config.kiosk_id),
        };
        SessionProfileRequest {
            profile_id: self.config.profile_id.clone(),
            url: SessionUrl {
                return_url: self.config.return_url.clone(),
                callback_url: self.config.callback_url.clone(),
            },
            order: Order {
                amount,
                currency: payment.amount.currency.code().to_string(),
                merchant_reference: payment.merchant_reference.clone(),
                merchant_reference_2: payment.cart_reference.clone(),
                vat_amount: Some(vat_amount),
                items: vec![OrderItem {
                    id: "cart".into(),
                    line_id: "1".into(),
                    description: Some(description),
                    quantity: 1,
                    amount,
                    vat_amount: Some(vat_amount),
                    vat: Some(self.config.vat_percent),
                }],
                store: Some(self.config.store()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vat_is_integer_and_rounded() {
        assert_eq!(vat_included(39900, 25), 7980);
        assert_eq!(vat_included(100, 25), 20);
        assert_eq!(vat_included(1, 25), 0);
        assert_eq!(vat_included(3, 25), 1);
        assert_eq!(vat_included(1000, 0), 0);
        assert_eq!(vat_included(u64::MAX, 25), u64::MAX / 5);
    }
}
