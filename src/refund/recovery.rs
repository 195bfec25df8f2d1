//! Settling the refunds a crash or an unknown outcome left open, without sending any again.

use tracing::{info, warn};

use super::journal::{RefundRecord, Replayed};
use super::{now_rfc3339, shows_on, Desk, RefundState};

impl Desk {
    /// Settles every open refund in `book`; returns how many stay open because Dintero could
    /// not be read for them (they are tried again before the next refund and at the next start).
    pub(super) async fn recover_locked(&self, book: &mut Replayed) -> usize {
        let open: Vec<_> = book
            .refunds
            .iter()
            .filter(|r| !r.state.is_final())
            .cloned()
            .collect();
        let mut still_open = 0;
        for refund in open {
            let record = match refund.state {
                // `sent` is synced before the call, so a refund without it never left.
                RefundState::Requested => RefundRecord::NotDone {
                    refund_reference: refund.refund_reference.clone(),
                    at: now_rfc3339(),
                },
                _ => match self.api.transaction(&refund.transaction_id).await {
                    Ok(tx) if shows_on(&refund, &tx) => RefundRecord::Refunded {
                        refund_reference: refund.refund_reference.clone(),
                        status: tx.status.as_str().to_string(),
                        at: now_rfc3339(),
                    },
                    Ok(_) => RefundRecord::NotDone {
                        refund_reference: refund.refund_reference.clone(),
                        at: now_rfc3339(),
                    },
                    Err(e) => {
                        warn!(refund = %refund.refund_reference, error = %e, "an open refund cannot be looked up yet");
                        still_open += 1;
                        continue;
                    }
                },
            };
            info!(refund = %refund.refund_reference, record = ?record, "open refund settled");
            if self.write(book, record).await.is_err() {
                still_open += 1;
            }
        }
        still_open
    }
}
