//! The terminal desk: what the control socket may ask Dintero about the kiosk's own terminal —
//! its status, a `sync`, and the remote operations (`end_of_day`, `send_logs`, `check_update`,
//! `open_menu`).
//!
//! The daemon owns the API client (its token cache is the one the payment flow uses, so a
//! console never needs the client secret) and the terminal id (`store.terminal_id`), so the
//! console asks the daemon and the daemon makes the call. None of these calls starts, reads or
//! changes a payment.
//!
//! **An operation while a payment runs is refused, not queued.** The terminal runs one thing at
//! a time: an `end_of_day` or an update started under a customer's payment would cut it off,
//! and one queued behind it would start just as the next customer walks up. The technician
//! sees the refusal at once and tries again when `status` shows no payment (or turns
//! maintenance on first, which keeps new carts away). A cart that arrives while an operation
//! runs is refused by Dintero with `409 TERMINAL_BUSY`, which the payment flow reports as a
//! payment not started; nothing is charged.

use crate::cart::{Cart, CartSource};
use crate::dintero::client::Client;
use crate::dintero::{ApiError, OperationKind, TerminalFilter, TerminalOperation};
use crate::money::{Currency, Money};

use super::protocol::TerminalReport;

/// The client and the terminal the daemon pays on.
#[derive(Clone, Debug)]
pub struct Desk {
    client: Client,
    terminal_id: String,
    currency: Currency,
}

impl Desk {
    /// A desk for `terminal_id`, calling through `client` (a clone of the flow's), for a kiosk
    /// charging in `currency`.
    pub fn new(client: Client, terminal_id: String, currency: Currency) -> Desk {
        Desk {
            client,
            terminal_id,
            currency,
        }
    }

    /// The cart of a technician's test payment of `amount` minor units. Its reference names
    /// the technician, so the journal and `payments` tell it from a customer's.
    pub fn test_cart(&self, amount: u64, technician: &str) -> Cart {
        let who: String = technician
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(32)
            .collect();
        Cart {
            amount: Money::new(amount, self.currency),
            reference: Some(format!("technician-test-{who}")),
            source: CartSource::Console,
        }
    }

    /// The client it calls through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The terminal (read on its own, which also refreshes what `status` shows), why it is in
    /// its status when the list says, and its newest operation.
    pub async fn report(&self) -> Result<TerminalReport, String> {
        let terminal = crate::dintero::Gateway::terminal(&self.client, &self.terminal_id)
            .await
            .map_err(|e| self.explain(&e))?;
        // The list is the only place with `status_reason`; an API client that may read one
        // terminal but not list them still gets the rest.
        let status_reason = self
            .client
            .terminals(&TerminalFilter::default())
            .await
            .ok()
            .and_then(|all| {
                all.into_iter()
                    .find(|t| t.terminal.terminal_id == self.terminal_id)
            })
            .and_then(|t| t.status_reason);
        let last_operation = self
            .client
            .operations(&self.terminal_id)
            .await
            .ok()
            .and_then(|ops| ops.into_iter().next());
        Ok(TerminalReport {
            terminal: crate::dintero::ListedTerminal {
                terminal,
                status_reason,
            },
            last_operation,
        })
    }

    /// `sync`, then the terminal as it is afterwards.
    pub async fn sync(&self) -> Result<TerminalReport, String> {
        self.client
            .sync_terminal(&self.terminal_id)
            .await
            .map_err(|e| self.explain(&e))?;
        self.report().await
    }

    /// Starts `operation` unless `payment_running`.
    pub async fn start(
        &self,
        operation: &str,
        key: &str,
        payment_running: bool,
    ) -> Result<TerminalOperation, String> {
        let kind = OperationKind::parse(operation).ok_or_else(|| {
            let names: Vec<&str> = OperationKind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "{operation:?} is not a terminal operation; use one of {}",
                names.join(", ")
            )
        })?;
        if payment_running {
            return Err(format!(
                "a payment is running on terminal {}; try again when status shows no payment (maintenance on keeps new carts away)",
                self.terminal_id
            ));
        }
        self.client
            .start_operation(&self.terminal_id, kind, key)
            .await
            .map_err(|e| self.explain(&e))
    }

    /// The terminal's operations, newest first.
    pub async fn operations(&self) -> Result<Vec<TerminalOperation>, String> {
        self.client
            .operations(&self.terminal_id)
            .await
            .map_err(|e| self.explain(&e))
    }

    /// Dintero's refusals in words a technician acts on.
    fn explain(&self, e: &ApiError) -> String {
        let id = &self.terminal_id;
        match (e, e.code()) {
            (_, Some("TERMINAL_NOT_RETRYABLE")) => format!(
                "terminal {id} has nothing to retry: sync only retries a terminal in ERROR or SYNC_ERROR (Dintero answered 409 TERMINAL_NOT_RETRYABLE); terminal status shows its status"
            ),
            (_, Some("TERMINAL_BUSY")) => format!(
                "terminal {id} is busy with a payment, a refund or another operation (Dintero answered 409 TERMINAL_BUSY); try again when it is done"
            ),
            (ApiError::Rejected { status: 404, .. }, _) => format!(
                "Dintero does not know terminal {id} on this account (404); check store.terminal_id in the config"
            ),
            (ApiError::Auth { status: 403, .. }, _) => format!(
                "the API client may not manage terminals (403); give it the terminal scopes in Dintero Backoffice ({e})"
            ),
            _ => e.to_string(),
        }
    }
}
