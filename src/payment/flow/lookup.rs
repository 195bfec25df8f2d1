//! Looking a payment up by its merchant reference, and believing only what proves to be this
//! payment (see [`crate::payment::identity`]).

use super::*;

/// What a lookup by reference found.
pub(super) enum Lookup {
    /// This payment's session (and its transaction, if it has one); boxed, since the other
    /// variants are small and a lookup is rare.
    Found(Box<(Session, Option<Transaction>)>),
    /// Only payments under this reference that are not this one: what did not match.
    Foreign(String),
    /// Nothing under this reference.
    Nothing,
}

impl<G: Gateway> Flow<G> {
    /// Looks a payment up by our reference: sessions first, then transactions on our terminal.
    /// What it finds counts only if it proves to be this payment (see [`super::identity`]).
    pub(super) async fn find(&self, payment: &Payment) -> Result<Lookup, ApiError> {
        let reference = payment.merchant_reference.as_str();
        let mut others = Vec::new();
        let sessions = self.gateway.search_sessions(reference).await?;
        let mut ours = Vec::new();
        for s in sessions.into_iter().filter(|s| {
            s.order
                .as_ref()
                .is_some_and(|o| o.merchant_reference == reference)
        }) {
            let mismatches = identity::session_mismatches(payment, &s);
            if mismatches.is_empty() {
                ours.push(s);
            } else {
                others.push(format!(
                    "session {}: {}",
                    s.id,
                    identity::describe(&mismatches)
                ));
            }
        }
        if let Some(found) = self.one_of_ours(ours, &mut others) {
            let tx = match &found.transaction_id {
                Some(id) => Some(self.gateway.get_transaction(id).await?),
                None => None,
            };
            return Ok(Lookup::Found(Box::new((found, tx))));
        }
        let query = TransactionQuery {
            merchant_reference: Some(reference.to_string()),
            terminal_id: Some(self.config.terminal_id().to_string()),
            limit: Some(10),
            ..TransactionQuery::default()
        };
        let txs = self.gateway.list_transactions(&query).await?;
        let mut ours = Vec::new();
        for tx in txs
            .into_iter()
            .filter(|t| t.merchant_reference.as_deref() == Some(reference))
        {
            let Some(session_id) = tx.session_id.clone() else {
                warn!(reference, transaction_id = %tx.id, "transaction found without a session id");
                continue;
            };
            let mut mismatches = identity::transaction_mismatches(payment, &tx);
            let s = self.gateway.get_session(&session_id).await?;
            for m in identity::session_mismatches(payment, &s) {
                if !mismatches.contains(&m) {
                    mismatches.push(m);
                }
            }
            if mismatches.is_empty() {
                ours.push((s, tx));
            } else {
                others.push(format!(
                    "transaction {}: {}",
                    tx.id,
                    identity::describe(&mismatches)
                ));
            }
        }
        if let Some((s, tx)) = self.one_of_ours(ours, &mut others) {
            return Ok(Lookup::Found(Box::new((s, Some(tx)))));
        }
        Ok(match others.is_empty() {
            true => Lookup::Nothing,
            false => Lookup::Foreign(others.join(" | ")),
        })
    }

    /// The one candidate that proved to be this payment; several that all match cannot be told
    /// apart, which is as bad as none.
    pub(super) fn one_of_ours<T>(&self, mut ours: Vec<T>, others: &mut Vec<String>) -> Option<T> {
        match ours.len() {
            1 => ours.pop(),
            0 => None,
            n => {
                others.push(format!(
                    "{n} payments match this one in every respect and cannot be told apart"
                ));
                None
            }
        }
    }
}
