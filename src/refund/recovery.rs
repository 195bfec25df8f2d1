//! Settling the refunds a crash or an unknown outcome left open, without sending any again.

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::journal::{Refund, RefundRecord, Replayed};
use super::{now_rfc3339, shows_on, Desk, RefundState};

/// Whether `refund` (sent, with no trace on its transaction) was last heard of less than
/// `settle_after` ago, so that the terminal may still complete it. A time that cannot be read
/// counts as long ago: the journal writes its own times, so it is not one of ours.
pub(super) fn may_still_complete(refund: &Refund, settle_after: Duration) -> bool {
    let Ok(since) = OffsetDateTime::parse(&refund.updated_at, &Rfc3339) else {
        return false;
    };
    OffsetDateTime::now_utc() - since < settle_after
}

impl Desk {
    /// Settles every open refund in `book`; returns how many stay open, because Dintero could
    /// not be read for them or because they may still complete on the terminal (they are looked
    /// up again: by [`Desk::settle_open`], before the next refund and at the next start).
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
                    // No trace yet, but a refund Dintero accepted (`202`) completes when the
                    // cardholder approves on the terminal, which may be after a crash and a
                    // restart: judged `not_done` now, it would be refunded twice.
                    Ok(_) if may_still_complete(&refund, self.timing.settle_after) => {
                        info!(refund = %refund.refund_reference, since = %refund.updated_at, "an open refund has no trace yet and may still complete on the terminal; looked up again");
                        still_open += 1;
                        continue;
                    }
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

    /// Looks the open refunds up again until none is left open: at the daemon's start, after a
    /// crash that left a refund the terminal may still complete. Waits 2 s, then twice as long
    /// each round up to 5 minutes, so a Dintero that stays unreachable costs little.
    pub async fn settle_open(&self) {
        let mut wait = self.timing.poll_every;
        loop {
            let open = self.recover().await;
            if open == 0 {
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(300));
        }
    }
}
