//! `refund` and `void`: money back to a card, and an authorization let go. Role `refund`.
//!
//! The console never calls Dintero for money: it shows the payment as the daemon reads it from
//! Dintero, asks the technician to confirm, and then asks the daemon to do it. The daemon's
//! refund desk ([`crate::refund`]) journals the refund before the call, takes the terminal from
//! the payment flow (a payment in flight finishes first) and gives the kiosk back to sale after.
//! ^C while the customer presents the card only stops the console waiting: the refund goes on,
//! and `payment REF` shows how it ended.

use serde_json::json;

use super::money;
use super::payments::{find_payment, Found};
use crate::console::command::{no_words, Answer, Job, Spec};
use crate::console::technicians::Action;
use crate::control::client::Client;
use crate::money::{Currency, Money};
use crate::refund::{PaymentView, RefundState};

/// The family's commands.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "refund",
        usage: "refund REF|TXN [AMOUNT]",
        about: "refund a captured payment to the card on the kiosk's terminal (default: all that is left; AMOUNT in the kiosk's currency, e.g. 399,00); the customer presents the card",
        example: "refund kiosk-1-7KQ2FX-20261205-000042 100,00",
        action: Some(Action::Refund),
        complete: no_words,
        run: Some(|job, words| Box::pin(refund_command(job, words))),
    },
    Spec {
        name: "void",
        usage: "void REF",
        about: "void an authorized payment that is not captured yet (the customer is not charged); a captured one is refunded instead",
        example: "void kiosk-1-7KQ2FX-20261205-000042",
        action: Some(Action::Void),
        complete: no_words,
        run: Some(|job, words| Box::pin(void_command(job, words))),
    },
];

const REFUND_USAGE: &str =
    "usage: refund REF|TXN [AMOUNT], e.g. refund kiosk-1-7KQ2FX-20261205-000042 100,00";

/// The lines `refund` and `void` show before asking.
fn describe(reference: &str, view: &PaymentView) -> String {
    let m = |minor| money(minor, &view.currency);
    format!(
        "payment      {reference}\ntransaction  {}  {}\namount       {}\ncaptured     {}\nrefunded     {}\nrefundable   {}\ncard         {}",
        view.transaction_id,
        view.status,
        m(view.amount),
        m(view.captured),
        m(view.refunded),
        m(view.refundable),
        view.card.as_deref().unwrap_or("-"),
    )
}

/// Parses AMOUNT as typed by a person in the payment's currency, to minor units.
fn parse_amount(text: &str, currency: &str) -> Result<u64, Answer> {
    let Some(currency) = Currency::from_code(currency) else {
        return Err(Answer::refused(format!(
            "the payment is in {currency}, which this kiosk cannot read amounts in; refund it all (leave AMOUNT out) or from Dintero Backoffice"
        )));
    };
    match Money::parse_major(text, currency) {
        Ok(m) if m.minor > 0 => Ok(m.minor),
        Ok(_) => Err(Answer::refused(
            "AMOUNT must be more than 0; nothing was sent",
        )),
        Err(e) => Err(Answer::refused(format!(
            "AMOUNT: {e}; type it as 399, 399.00 or 399,00"
        ))),
    }
}

/// A payment found for `refund` or `void`: in the journal or by transaction id, and as Dintero
/// shows it now.
struct Looked {
    found: Found,
    daemon: Client,
    transaction_id: String,
    view: PaymentView,
    /// The merchant reference, or what was typed when Dintero has none.
    reference: String,
}

/// Finds `target` and reads it through the daemon; `nothing` ends the refusal for a payment
/// without a transaction.
async fn look_up(job: &Job, target: &str, nothing: &str) -> Result<Looked, Answer> {
    let found = find_payment(&job.paths.state_dir, target)?;
    let Some(transaction_id) = found.transaction_id() else {
        return Err(Answer::refused(format!(
            "payment {target} has no transaction: the terminal never took it, so {nothing}"
        )));
    };
    let mut daemon = job
        .daemon()
        .await
        .map_err(|e| Answer::failed(e.to_string()))?;
    let view = daemon
        .payment(&transaction_id)
        .await
        .map_err(|e| Answer::failed(e.to_string()))?;
    let reference = view
        .merchant_reference
        .clone()
        .unwrap_or_else(|| target.to_string());
    Ok(Looked {
        found,
        daemon,
        transaction_id,
        view,
        reference,
    })
}

async fn refund_command(job: Job, words: Vec<String>) -> Answer {
    let (target, amount_text) = match words.as_slice() {
        [target] => (target, None),
        [target, amount] => (target, Some(amount.as_str())),
        _ => return Answer::refused(REFUND_USAGE),
    };
    refund(&job, target, amount_text).await
}

/// Refunds `amount_text` (all that is refundable when `None`) of the payment `target` (a
/// merchant reference or a transaction id) after a confirmation: `refund`, and `test terminal`
/// for its own test payment.
pub(super) async fn refund(job: &Job, target: &str, amount_text: Option<&str>) -> Answer {
    let Looked {
        found: _,
        mut daemon,
        transaction_id,
        view,
        reference,
    } = match look_up(job, target, "nothing was paid to refund").await {
        Ok(looked) => looked,
        Err(answer) => return answer,
    };
    let amount = match amount_text {
        Some(text) => match parse_amount(text, &view.currency) {
            Ok(minor) => minor,
            Err(answer) => return answer,
        },
        None => view.refundable,
    };
    if view.refundable == 0 {
        return Answer::refused(format!(
            "nothing to refund: payment {reference} is {} with {} refundable; nothing was sent",
            view.status,
            money(0, &view.currency)
        ));
    }
    if amount > view.refundable {
        return Answer::refused(format!(
            "{} is more than the {} still refundable on payment {reference} (captured {}, refunded {}); nothing was sent",
            money(amount, &view.currency),
            money(view.refundable, &view.currency),
            money(view.captured, &view.currency),
            money(view.refunded, &view.currency),
        ));
    }
    job.print(describe(&reference, &view)).await;
    // The prompt stays short: a line editor on an 80-column terminal leaves the answer only
    // what the prompt does not take.
    let question = format!("Refund {}?", money(amount, &view.currency));
    if !job.confirm(&question).await {
        return Answer::refused("refund not confirmed; nothing was sent");
    }
    job.print("Present the card on the terminal… (^C stops waiting; the refund goes on)")
        .await;
    let technician = job.login.id.to_string();
    let result = tokio::select! {
        result = daemon.refund(&transaction_id, Some(amount), &technician) => result,
        _ = job.cancelled() => {
            return Answer::failed(format!(
                "stopped waiting; the refund goes on in the daemon: payment {reference} shows its result"
            ));
        }
    };
    let refund = match result {
        Ok(refund) => refund,
        Err(e) => return Answer::failed(e.to_string()),
    };
    let json = json!({"ok": refund.state == RefundState::Refunded, "refund": refund});
    let shown = money(refund.amount, &refund.currency);
    let detail = refund.detail.clone().unwrap_or_default();
    match refund.state {
        RefundState::Refunded => Answer::ok(
            format!(
                "Refunded {shown} of payment {reference} (refund {}); the transaction is now {detail}",
                refund.refund_reference
            ),
            json,
        ),
        RefundState::Unknown => Answer {
            json,
            ..Answer::failed(format!(
                "refund {} of {shown}: outcome unknown ({detail}); the daemon looks it up before the next refund and at its next start; payment {reference} shows it; do not refund again before it is settled",
                refund.refund_reference
            ))
        },
        _ => Answer {
            json,
            ..Answer::failed(format!(
                "refund {} of {shown} was not done: {detail}; nothing was refunded",
                refund.refund_reference
            ))
        },
    }
}

async fn void_command(job: Job, words: Vec<String>) -> Answer {
    let [target] = words.as_slice() else {
        return Answer::refused("usage: void REF, e.g. void kiosk-1-7KQ2FX-20261205-000042");
    };
    let Looked {
        found,
        mut daemon,
        transaction_id: _,
        view,
        reference,
    } = match look_up(&job, target, "nothing is authorized to void").await {
        Ok(looked) => looked,
        Err(answer) => return answer,
    };
    if view.status != "AUTHORIZED" {
        let why = if view.captured > 0 {
            format!(
                "it is captured ({}): refund it instead: refund {reference}",
                view.status
            )
        } else {
            format!("it is {}, not an open authorization", view.status)
        };
        return Answer::refused(format!("cannot void payment {reference}: {why}"));
    }
    let Some(session_id) = found.session_id().or(view.session_id.clone()) else {
        return Answer::refused(format!(
            "payment {reference} has no session id in the journal or at Dintero; void it from Dintero Backoffice"
        ));
    };
    job.print(describe(&reference, &view)).await;
    job.print("A void lets the authorization go: the customer is not charged.")
        .await;
    let question = format!("Void {}?", money(view.amount, &view.currency));
    if !job.confirm(&question).await {
        return Answer::refused("void not confirmed; nothing was sent");
    }
    let technician = job.login.id.to_string();
    let after = match daemon.void(&session_id, &technician).await {
        Ok(after) => after,
        Err(e) => return Answer::failed(e.to_string()),
    };
    let json = json!({"ok": after.status == "AUTHORIZATION_VOIDED", "payment": after});
    match after.status.as_str() {
        "AUTHORIZATION_VOIDED" => Answer::ok(
            format!(
                "Voided: payment {reference} is AUTHORIZATION_VOIDED; the customer is not charged"
            ),
            json,
        ),
        _ if after.captured > 0 => Answer {
            json,
            ..Answer::failed(format!(
                "payment {reference} was captured before the void took effect ({}): the payment stands; refund it if the customer is owed: refund {reference}",
                after.status
            ))
        },
        other => Answer {
            json,
            ..Answer::failed(format!(
                "payment {reference} is {other} after the void; payment {reference} shows what Dintero says"
            ))
        },
    }
}
