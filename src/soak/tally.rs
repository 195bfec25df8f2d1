//! What the journals said during the run: every payment the soak saw, merged across restarts,
//! lost state and damage, so the end checks know each payment even after its lines are gone.

use crate::journal::{self, PaymentRecord};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use super::Soak;

/// The reference a `MissingIntent` problem names.
pub(super) fn missing_intent_reference(detail: &str) -> Option<&str> {
    detail.strip_prefix("no intent for ")?.split(':').next()
}

/// Whether a payment's intent was read (a payment known only from later records has none).
pub(super) fn has_intent(p: &PaymentRecord) -> bool {
    !p.started_at.is_empty()
}

/// Merges what a journal read says about one payment into what the soak knew of it. Returns a
/// description when the two are different payments under one reference.
fn merge_payment(tally: &mut HashMap<String, PaymentRecord>, p: PaymentRecord) -> Option<String> {
    let Some(old) = tally.get_mut(&p.merchant_reference) else {
        tally.insert(p.merchant_reference.clone(), p);
        return None;
    };
    let key = |p: &PaymentRecord| {
        (
            p.amount,
            p.cart_reference.clone(),
            p.terminal_id.clone(),
            p.started_at.clone(),
        )
    };
    if has_intent(old) && has_intent(&p) && key(old) != key(&p) {
        return Some(format!(
            "{}: one reference, two payments: {} minor units for {} on {} at {}, and {} for {} on \
             {} at {}",
            p.merchant_reference,
            old.amount,
            old.cart_reference.as_deref().unwrap_or("-"),
            old.terminal_id,
            old.started_at,
            p.amount,
            p.cart_reference.as_deref().unwrap_or("-"),
            p.terminal_id,
            p.started_at
        ));
    }
    // A read from before a damage knew more: an outcome, or the intent's fields.
    if old.outcome.is_some() && p.outcome.is_none() {
        return None;
    }
    let mut p = p;
    if !has_intent(&p) {
        p.amount = old.amount;
        p.currency = std::mem::take(&mut old.currency);
        p.cart_reference = old.cart_reference.take();
        p.terminal_id = std::mem::take(&mut old.terminal_id);
        p.started_at = std::mem::take(&mut old.started_at);
    }
    *old = p;
    None
}

impl Soak {
    /// Re-reads kiosk `k`'s journal if it changed and merges it into the tally.
    pub(super) fn refresh_journal(&mut self, k: usize) {
        let kiosk = &mut self.kiosks[k];
        let path = kiosk.state_dir.join(journal::FILE_NAME);
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        let identity = (meta.ino(), meta.len());
        if kiosk.journal_seen == Some(identity) {
            return;
        }
        let Ok(replay) = journal::read_only(&kiosk.state_dir) else {
            return;
        };
        kiosk.journal_seen = Some(identity);
        for p in replay.payments {
            let reference = p.merchant_reference.clone();
            if let Some(two) = merge_payment(&mut self.tally, p) {
                self.reused.entry(reference).or_insert(two);
            }
        }
    }

    /// Whether kiosk `k`'s journal, as last read, has no unfinished payment.
    pub(super) fn all_final(&self, k: usize) -> bool {
        journal::read_only(&self.kiosks[k].state_dir)
            .map_or(true, |r| r.unresolved().next().is_none())
    }

    /// The payments for `cart` whose outcome has not been taken into account yet.
    pub(super) fn open_payments(&self, cart: &str) -> Vec<PaymentRecord> {
        self.tally
            .values()
            .filter(|p| p.cart_reference.as_deref() == Some(cart))
            .filter(|p| !self.concluded.contains(&p.merchant_reference))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use crate::journal::Outcome;

    use super::*;

    /// A payment record as the journal keeps it, for the checks' tests.
    pub(in crate::soak) fn record(
        reference: &str,
        amount: u64,
        outcome: Option<Outcome>,
    ) -> PaymentRecord {
        PaymentRecord {
            merchant_reference: reference.into(),
            amount,
            currency: "NOK".into(),
            cart_reference: Some("SOAK-1".into()),
            terminal_id: "T12345678-T0001".into(),
            session_id: None,
            transaction_id: None,
            state: "x".into(),
            outcome,
            status: None,
            started_at: String::new(),
            finished_at: None,
            reopened_at: None,
        }
    }

    /// An intent for `cart`, started at `started`.
    pub(in crate::soak) fn intent(
        reference: &str,
        amount: u64,
        cart: &str,
        started: &str,
    ) -> PaymentRecord {
        PaymentRecord {
            cart_reference: Some(cart.into()),
            started_at: started.into(),
            ..record(reference, amount, None)
        }
    }

    #[test]
    fn merging_keeps_what_damage_erased_and_catches_a_reused_reference() {
        let mut tally = HashMap::new();
        let first = intent("r1", 100, "SOAK-1", "2026-01-01T00:00:00Z");
        assert_eq!(merge_payment(&mut tally, first.clone()), None);
        // Read again after the intent line was damaged: amount and cart come from before.
        let mut damaged = record("r1", 0, Some(Outcome::Approved));
        damaged.terminal_id = String::new();
        damaged.cart_reference = None;
        assert_eq!(merge_payment(&mut tally, damaged), None);
        let p = &tally["r1"];
        assert_eq!(p.outcome, Some(Outcome::Approved));
        assert_eq!(
            (p.amount, p.cart_reference.as_deref()),
            (100, Some("SOAK-1"))
        );
        assert_eq!(p.terminal_id, "T12345678-T0001");
        // An unfinished read after a final one does not reopen the payment.
        assert_eq!(merge_payment(&mut tally, first), None);
        assert_eq!(tally["r1"].outcome, Some(Outcome::Approved));
        // Another payment under the same reference, from another kiosk or a lost directory.
        let other = intent("r1", 100, "SOAK-B-2", "2026-01-01T00:01:00Z");
        let found = merge_payment(&mut tally, other).unwrap();
        assert!(found.contains("one reference, two payments"), "{found}");
        assert!(found.contains("SOAK-B-2"), "{found}");
    }
}
