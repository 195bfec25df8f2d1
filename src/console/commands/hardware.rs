//! `test`: the kiosk's hardware, tried from the console while the kiosk is in maintenance.
//!
//! | command | what the technician sees |
//! |---------|--------------------------|
//! | `test display` | a test pattern (colour order, dead pixels, orientation, size; see [`crate::display::pattern`]), then every screen a customer can see, in the kiosk's language, one per Enter, then the technician screen again |
//! | `test gpio` | the input lines (preset buttons, cancel, pulse input) and each change of their level as it happens, until Enter or ^C; after Enter, one output (busy, vend) flipped for a second after a typed confirmation |
//! | `test scanner` | the next scan decoded (format, amount, reference) or why it is refused, as `kioskpay decode` says it; nothing is paid |
//! | `test network`, `test terminal` | the way to Dintero and the card terminal: run by [`super::checks`] |
//!
//! The daemon owns the panel and the scanner, so the console asks it over the control socket and
//! the daemon does the work: it draws the test screens on the real panel (and gives the panel
//! back to the kiosk when the test ends or maintenance does), and it hands the next scan to the
//! test instead of the payment flow, so a test scan can never start a payment, then or later.
//!
//! Every hardware test needs maintenance on, and the daemon refuses one until the technician
//! screen shows: the console does not switch maintenance on by itself. A payment in flight
//! finishes before maintenance takes effect, so a test that switched it on would either wait for
//! a customer or test beside one; and switching it off afterwards could put the kiosk back on
//! sale while the technician still has it open. `maintenance on` is one explicit, audited step.

use serde_json::json;

use super::money;
use crate::console::command::{first_word_of, Answer, Job, Spec};
use crate::console::line::Echo;
use crate::console::technicians::Action;
use crate::control::client::ClientError;
use crate::control::protocol::{GpioInput, GpioOutput, Scan, SCAN_TEST_WAIT_S};
use crate::display::{pattern, sample_states};

/// What `test` can test.
const SUBJECTS: &[&str] = &["display", "scanner", "gpio", "network", "terminal"];

/// The family's commands.
pub const COMMANDS: &[Spec] = &[Spec {
    name: "test",
    usage: "test display|scanner|gpio|network|terminal",
    about: "tries the kiosk: display (a test pattern, then every customer screen), scanner (the next scan decoded, not paid), gpio (input levels live, an output toggled), all in maintenance; network (DNS, TCP, TLS, token, round trips, without the daemon); terminal (its status, then a confirmed test payment in maintenance)",
    example: "test scanner",
    action: Some(Action::Test),
    complete: |words| first_word_of(words, SUBJECTS),
    run: Some(|job, words| Box::pin(test(job, words))),
}];

async fn test(job: Job, words: Vec<String>) -> Answer {
    match words.first().map(String::as_str) {
        Some("scanner") if words.len() == 1 => scanner(job).await,
        Some("display") if words.len() == 1 => display(job).await,
        Some("gpio") if words.len() == 1 => gpio(job).await,
        Some("network") => super::checks::run_network(job, words).await,
        Some("terminal") => super::checks::run_terminal(job, words).await,
        _ => Answer::refused(
            "usage: test display|scanner|gpio|network|terminal (help test shows an example)",
        ),
    }
}

/// `test scanner`: waits for one scan (or ^C) and shows what it came to.
async fn scanner(job: Job) -> Answer {
    let mut client = match job.daemon().await {
        Ok(client) => client,
        Err(e) => return Answer::failed(e.to_string()),
    };
    job.print(format!(
        "Scan a code now (waiting up to {SCAN_TEST_WAIT_S} s, ^C stops); it is decoded, not paid."
    ))
    .await;
    let scan = tokio::select! {
        scan = client.scan_test() => scan,
        () = job.cancelled() => return Answer::failed("test scanner: stopped before a scan"),
    };
    match scan {
        Ok(scan) => Answer::ok(scan_text(&scan), json!({"ok": true, "scan": scan})),
        Err(e) => Answer::failed(e.to_string()),
    }
}

fn scan_text(scan: &Scan) -> String {
    match scan {
        Scan::Decoded {
            format,
            amount,
            currency,
            reference,
        } => format!(
            "format     {format}\namount     {}\nreference  {}\nThe kiosk would charge this code (nothing was paid).",
            money(*amount, currency),
            reference.as_deref().unwrap_or("none"),
        ),
        Scan::Refused { error, customer } => format!(
            "refused    {error}\ncustomer   is told: {customer}\nThe kiosk would not charge this code."
        ),
    }
}

/// `test display`: the test pattern, then every customer screen, one per Enter, then the
/// technician screen again.
async fn display(job: Job) -> Answer {
    let mut client = match job.daemon().await {
        Ok(client) => client,
        Err(e) => return Answer::failed(e.to_string()),
    };
    let screens: Vec<&str> = std::iter::once(pattern::NAME)
        .chain(
            sample_states(tokio::time::Instant::now())
                .into_iter()
                .map(|(name, _)| name),
        )
        .collect();
    let mut shown = 0;
    for (i, name) in screens.iter().enumerate() {
        if let Err(e) = client.display_test(Some(name)).await {
            // The panel goes back to the kiosk whatever went wrong; a second failure says no
            // more than the first.
            let _ = client.display_test(None).await;
            return Answer::failed(format!("test display: {e}"));
        }
        shown = i + 1;
        job.print(format!("{shown}/{}  {name}", screens.len()))
            .await;
        if shown == screens.len() {
            break;
        }
        match job.ask("Enter: next screen, q: stop ", Echo::Visible).await {
            Some(line) if line.trim() == "q" => break,
            Some(_) => {}
            None => break,
        }
    }
    if let Err(e) = client.display_test(None).await {
        return Answer::failed(format!(
            "test display: the panel could not be given back ({e}); maintenance off gives it back"
        ));
    }
    Answer::ok(
        format!(
            "{shown} of {} screens shown; the technician screen is back",
            screens.len()
        ),
        json!({"ok": true, "shown": screens[..shown], "of": screens.len()}),
    )
}

/// `test gpio`: the input lines, then each change as it happens until Enter or ^C.
async fn gpio(job: Job) -> Answer {
    let mut client = match job.daemon().await {
        Ok(client) => client,
        Err(e) => return Answer::failed(e.to_string()),
    };
    let mut now = match client.gpio_test(None).await {
        Ok(gpio) => gpio,
        Err(e) => return Answer::failed(format!("test gpio: {e}")),
    };
    for input in &now.inputs {
        job.print(input_text(input)).await;
    }
    let stop = job.ask("Enter (or ^C) stops watching ", Echo::Visible);
    tokio::pin!(stop);
    let mut changes = 0;
    let stopped_by_enter = loop {
        let next = tokio::select! {
            line = &mut stop => break line.is_some(),
            next = client.gpio_test(Some(now.changes)) => next,
        };
        let next = match next {
            Ok(next) => next,
            Err(e) => return Answer::failed(format!("test gpio: {e}")),
        };
        for (input, before) in next.inputs.iter().zip(&now.inputs) {
            if input.active != before.active {
                changes += 1;
                job.print(input_text(input)).await;
            }
        }
        now = next;
    };
    // The watch may have left a request waiting on this connection: its late answer must not
    // be read as another's, so the connection goes, and the daemon stops waiting with it.
    drop(client);
    let seen = format!("{changes} change(s) seen");
    let toggled = match now.outputs.as_slice() {
        [] => "this kiosk's [gpio] has no outputs to toggle".to_string(),
        _ if !stopped_by_enter => "no output toggled".to_string(),
        outputs => match toggle(&job, outputs).await {
            Ok(done) => done,
            Err(e) => return Answer::failed(format!("{seen}; test gpio: {e}")),
        },
    };
    Answer::ok(
        format!("{seen}; {toggled}"),
        json!({"ok": true, "changes": changes, "gpio": now, "toggled": toggled}),
    )
}

/// Offers to flip one of `outputs` for a second, after a typed confirmation; says what was done.
async fn toggle(job: &Job, outputs: &[GpioOutput]) -> Result<String, ClientError> {
    let listed = outputs
        .iter()
        .map(|o| format!("{} {}", o.line, o.role))
        .collect::<Vec<_>>()
        .join(", ");
    let Some(answer) = job
        .ask(
            format!("Toggle an output for 1 s? Its line ({listed}), or Enter to skip: "),
            Echo::Visible,
        )
        .await
    else {
        return Ok("no output toggled".into());
    };
    let Some(output) = outputs.iter().find(|o| answer.trim().parse() == Ok(o.line)) else {
        return Ok("no output toggled".into());
    };
    let warning = if output.role.starts_with("vend") {
        " The machine may take it as a paid sale and hand out goods."
    } else {
        ""
    };
    let question = format!(
        "Line {} is the {}.{warning} Flip it for 1 s?",
        output.line, output.role
    );
    if !job.confirm(&question).await {
        return Ok("no output toggled (not confirmed)".into());
    }
    let asserted = job.daemon().await?.gpio_toggle(output.line).await?;
    Ok(format!(
        "line {} was {} for 1 s, then back to what the kiosk's state says",
        output.line,
        if asserted { "asserted" } else { "released" }
    ))
}

fn input_text(input: &GpioInput) -> String {
    let level = match input.active {
        Some(true) => "active",
        Some(false) => "inactive",
        None => "not known until it changes",
    };
    format!("line {:<3} {:<32} {level}", input.line, input.role)
}
