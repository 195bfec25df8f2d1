//! Following a payment: driving it from phase to phase by reading Dintero, journaling each
//! change and publishing what the customer sees, until it ends or the kiosk shuts down.

use super::*;

pub(super) fn transaction_of(phase: &Phase) -> Option<&str> {
    match phase {
        Phase::WaitingForCard { transaction_id, .. } | Phase::Processing { transaction_id, .. } => {
            Some(transaction_id)
        }
        Phase::Done { outcome, .. } => outcome.transaction_id(),
        _ => None,
    }
}

/// What a payment in `phase` waits for, as the polling policy sees it.
fn waiting_for(phase: &Phase) -> Waiting {
    match phase {
        Phase::AwaitingPickup { .. } => Waiting::Pickup,
        Phase::WaitingForCard { .. } => Waiting::Card,
        Phase::Processing { .. } => Waiting::Capture,
        _ => Waiting::Answer,
    }
}

/// The next nudge from the callback listener; never completes without one. `None`: the
/// listener is gone.
async fn next_nudge(
    callbacks: &mut Option<mpsc::Receiver<CallbackNudge>>,
) -> Option<CallbackNudge> {
    match callbacks {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Capped exponential backoff with jitter, or Dintero's `Retry-After` when it is longer.
pub(super) fn backoff(base: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let cap = Duration::from_secs(10);
    let exp = base.saturating_mul(1u32 << attempt.min(6)).min(cap);
    let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
    match retry_after {
        Some(ra) => ra.max(jittered).min(Duration::from_secs(60)),
        None => jittered,
    }
}

impl<G: Gateway> Flow<G> {
    /// Applies an event, journals what changed, publishes the view.
    pub(super) async fn step(&mut self, phase: Phase, event: Event, deadline: Instant) -> Phase {
        let before = phase.clone();
        let next = match phase.apply(event) {
            Ok(next) => next,
            Err(e) => {
                error!(error = %e, "ignored an event the state machine does not allow");
                return before;
            }
        };
        let reference = next.payment().merchant_reference.clone();
        if before.session_id().is_none() {
            if let Some(session_id) = next.session_id() {
                self.write_logged(Record::Session {
                    merchant_reference: reference.clone(),
                    session_id: session_id.to_string(),
                })
                .await;
            }
        }
        if transaction_of(&before).is_none() {
            if let Some(transaction_id) = transaction_of(&next) {
                self.write_logged(Record::Transaction {
                    merchant_reference: reference.clone(),
                    transaction_id: transaction_id.to_string(),
                })
                .await;
            }
        }
        if let Phase::Done { outcome, .. } = &next {
            self.write_logged(Record::Final {
                merchant_reference: reference,
                outcome: outcome.outcome(),
                transaction_id: outcome.transaction_id().map(str::to_string),
                status: match outcome {
                    Final::Approved { status, .. } => Some(status.as_str().to_string()),
                    _ => None,
                },
                at: now_rfc3339(),
            })
            .await;
        } else if next.name() != before.name() {
            self.write_logged(Record::State {
                merchant_reference: reference,
                state: next.name().to_string(),
            })
            .await;
        }
        if next.name() != before.name() {
            debug!(from = before.name(), to = next.name(), "payment phase");
        }
        self.publish(&next, deadline);
        next
    }

    pub(super) fn publish(&mut self, phase: &Phase, deadline: Instant) {
        if let Phase::Done { .. } = phase {
            self.hold(phase.view(deadline));
            return;
        }
        if self.hold_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
        self.hold_until = None;
        self.state.send_replace(phase.view(deadline));
    }

    /// Drives a payment from `phase` until it ends or the kiosk shuts down.
    pub(super) async fn drive(
        &mut self,
        mut phase: Phase,
        deadline: Instant,
        driving: Driving,
        mut shutdown: Shutdown<'_>,
    ) -> Driven {
        let created_at = Instant::now();
        let mut errors: u32 = 0;
        // When the cancel was last sent: a cancel whose answer was lost may never have reached
        // Dintero, so it is sent again while the payment is still not over.
        let mut cancel_sent: Option<Instant> = None;
        let mut first_miss: Option<Instant> = None;
        // What a lookup found under the reference that was not this payment.
        let mut foreign: Option<String> = None;
        let mut session: Option<Session> = None;
        // A session just created cannot have been picked up yet; a payment found again
        // (recovery, a withdrawal, a lost create answer) is read at once.
        let mut next_step = match (&phase, driving) {
            (Phase::AwaitingPickup { .. }, Driving::Live) => {
                created_at + self.config.polling.first_read()
            }
            _ => created_at,
        };
        // Since when the payment waits for what it waits for now: the adaptive policy looks
        // less often the longer a person takes.
        let mut waiting_since = (waiting_for(&phase), created_at);
        loop {
            if let Phase::Done { outcome, .. } = &phase {
                return Driven::Finished(outcome.clone());
            }
            let hold_end = self.hold_until.unwrap_or_else(far_future);
            tokio::select! {
                _ = shutdown.as_mut() => {
                    let reference = phase.payment().merchant_reference.clone();
                    self.write_logged(Record::State {
                        merchant_reference: reference.clone(),
                        state: format!("interrupted_{}", phase.name()),
                    })
                    .await;
                    info!(%reference, phase = phase.name(), "shutting down with a payment in flight; the journal has it for the next start");
                    return Driven::ShutDown;
                }
                () = beat(&mut self.heartbeat) => {}
                event = self.inputs.recv(), if self.inputs_open => match event {
                    Some(InputEvent::Cart(cart) | InputEvent::SignedCart(cart) | InputEvent::SlipCart(cart)) => {
                        info!(amount = %cart.amount, "cart refused: a payment is running");
                        self.state.send_replace(KioskState::Refused { reason: RefusalReason::Busy });
                        self.hold_until = Some(Instant::now() + self.config.result_screen.min(Duration::from_secs(2)));
                    }
                    Some(other) => self.on_input_while_busy(other),
                    None => self.inputs_open = false,
                },
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(Command::Cancel) => {
                        if matches!(phase, Phase::AwaitingPickup { .. } | Phase::WaitingForCard { .. }) {
                            info!(reference = %phase.payment().merchant_reference, "cancel requested");
                            phase = self.step(phase, Event::Cancel(CancelReason::Requested), deadline).await;
                            next_step = Instant::now();
                        } else {
                            info!(phase = phase.name(), "cancel requested but the payment is past cancelling");
                        }
                    }
                    Some(Command::CheckHealth) => {}
                    Some(Command::TestPayment(cart)) => {
                        info!(amount = %cart.amount, "a test payment asked for while a payment runs; ignored");
                    }
                    // Noted now, shown after the payment: a payment in flight always finishes.
                    Some(Command::Maintenance(on)) => self.set_maintenance(on),
                    // The console checks that the kiosk is idle first; one that raced a new
                    // payment is asked again by the technician.
                    Some(Command::Resolve(reference)) => {
                        info!(%reference, "resolve asked for while a payment runs; not done: ask again when the kiosk is idle");
                    }
                    None => self.commands_open = false,
                },
                _ = sleep_until(hold_end), if self.hold_until.is_some() => {
                    self.hold_until = None;
                    self.publish(&phase, deadline);
                }
                nudge = next_nudge(&mut self.callbacks) => match nudge {
                    // Only the read is brought forward: what Dintero then says decides. While
                    // reads fail, the backoff (and Dintero's Retry-After) stands.
                    Some(nudge) if errors == 0 && nudge.names(phase.session_id(), transaction_of(&phase)) => {
                        debug!(reference = %phase.payment().merchant_reference, "a signed callback names this payment; reading it now");
                        next_step = Instant::now();
                    }
                    Some(nudge) => debug!(?nudge, errors, "callback nudge not acted on: another payment, or reads are failing"),
                    None => self.callbacks = None,
                },
                _ = sleep_until(next_step) => {
                    let now = Instant::now();
                    // Timers first: they turn into events the state machine judges.
                    let timer_event = match &phase {
                        Phase::AwaitingPickup { .. } | Phase::WaitingForCard { .. } if now >= deadline => {
                            info!(reference = %phase.payment().merchant_reference, "kiosk timeout; cancelling and reading again");
                            Some(CancelReason::Timeout)
                        }
                        _ => None,
                    };
                    if let Some(reason) = timer_event {
                        phase = self.step(phase, Event::Cancel(reason), deadline).await;
                        continue;
                    }
                    let polled_at = Instant::now();
                    let result = self.advance(&phase, driving, &mut cancel_sent, &mut first_miss, &mut foreign, &mut session).await;
                    match result {
                        Ok(Some(event)) => {
                            errors = 0;
                            phase = self.step(phase, event, deadline).await;
                            next_step = self.next_read(&phase, &mut waiting_since);
                        }
                        // Offline is judged by what Dintero says, not by the clock alone: only a
                        // read sent after the pickup deadline that still shows no transaction
                        // counts, so a slow kiosk never cancels a payment the terminal has taken.
                        Ok(None) if matches!(phase, Phase::AwaitingPickup { .. }) && polled_at >= created_at + self.config.pickup_timeout => {
                            errors = 0;
                            warn!(reference = %phase.payment().merchant_reference, "the terminal has not picked the payment up; cancelling");
                            phase = self.step(phase, Event::Cancel(CancelReason::TerminalOffline), deadline).await;
                            next_step = Instant::now();
                        }
                        Ok(None) => {
                            errors = 0;
                            next_step = self.next_read(&phase, &mut waiting_since);
                        }
                        Err(e) => {
                            errors += 1;
                            self.note_api_error(&e);
                            let wait = backoff(self.config.polling.base(), errors, e.retry_after());
                            warn!(reference = %phase.payment().merchant_reference, error = %e, attempt = errors, retry_in_ms = wait.as_millis() as u64, "could not read the payment; retrying");
                            if errors >= 3 && !matches!(phase, Phase::Checking { .. }) {
                                self.state.send_replace(KioskState::Checking { reference: phase.payment().merchant_reference.clone() });
                            }
                            next_step = Instant::now() + wait;
                        }
                    }
                }
            }
        }
    }

    /// When to read the payment next, by the polling policy: `waiting_since` is what it waited
    /// for at the last read and since when, reset when that changes.
    fn next_read(&self, phase: &Phase, waiting_since: &mut (Waiting, Instant)) -> Instant {
        let now = Instant::now();
        let waiting = waiting_for(phase);
        if waiting != waiting_since.0 {
            *waiting_since = (waiting, now);
        }
        now + self.config.polling.next(waiting, now - waiting_since.1)
    }

    pub(super) fn on_input_while_busy(&mut self, event: InputEvent) {
        match event {
            InputEvent::Cart(_) | InputEvent::SignedCart(_) | InputEvent::SlipCart(_) => {}
            InputEvent::Unreadable { reason, .. } => {
                info!(%reason, "code ignored: a payment is running")
            }
            InputEvent::ScannerUnavailable | InputEvent::ScannerBack => self.note_scanner(event),
        }
    }

    /// One step of talking to Dintero for the current phase; `Ok(None)` means nothing new.
    pub(super) async fn advance(
        &mut self,
        phase: &Phase,
        driving: Driving,
        cancel_sent: &mut Option<Instant>,
        first_miss: &mut Option<Instant>,
        foreign: &mut Option<String>,
        session: &mut Option<Session>,
    ) -> Result<Option<Event>, ApiError> {
        match phase {
            Phase::Checking {
                payment,
                session_id: None,
            } => match self.find(payment).await? {
                Lookup::Found(found) => {
                    let (s, tx) = *found;
                    let progress = classify(&s, tx.as_ref(), None);
                    let session_id = s.id.clone();
                    *session = Some(s);
                    Ok(Some(Event::Found {
                        session_id,
                        progress,
                    }))
                }
                // Someone else's payment under this reference counts as a miss: this payment's
                // own session may still show up (a create that lands late) and is then taken.
                missed => {
                    if let Lookup::Foreign(detail) = missed {
                        warn!(reference = %payment.merchant_reference, %detail, "a payment under this reference is not this one; looking again before deciding");
                        *foreign = Some(detail);
                    }
                    let now = Instant::now();
                    match first_miss {
                        None => {
                            *first_miss = Some(now);
                            Ok(None)
                        }
                        Some(at) if now >= *at + self.config.lookup_confirm_delay => {
                            Ok(Some(match foreign.take() {
                                Some(detail) => Event::Conflict { detail },
                                None => Event::NotFound,
                            }))
                        }
                        Some(_) => Ok(None),
                    }
                }
            },
            Phase::Cancelling { session_id, .. }
                if cancel_sent
                    .is_none_or(|at| Instant::now() >= at + self.config.lookup_confirm_delay) =>
            {
                match self.gateway.cancel_session(session_id).await {
                    Ok(()) => info!(
                        session_id,
                        "session cancelled; reading what really happened"
                    ),
                    Err(e) if e.outcome_unknown() => {
                        warn!(session_id, error = %e, "cancel outcome unknown; reading the payment again");
                    }
                    Err(ApiError::Rejected {
                        status, message, ..
                    }) => {
                        info!(session_id, status, %message, "cancel refused (the payment may have completed); reading it again");
                    }
                    Err(e) => return Err(e),
                }
                *cancel_sent = Some(Instant::now());
                let progress = self.poll(session_id, None, session, phase).await?;
                Ok(Some(Event::Polled(progress)))
            }
            _ => {
                let Some(session_id) = phase.session_id() else {
                    return Ok(None);
                };
                let known_tx = transaction_of(phase).map(str::to_string);
                let progress = self
                    .poll(session_id, known_tx.as_deref(), session, phase)
                    .await?;
                let withdraw = match driving {
                    Driving::Live => false,
                    Driving::Recovery => progress == Progress::NotPickedUp,
                    Driving::Withdrawal => {
                        matches!(progress, Progress::NotPickedUp | Progress::Prompting { .. })
                            && !matches!(phase, Phase::Cancelling { .. })
                    }
                };
                if withdraw {
                    return Ok(Some(Event::Cancel(CancelReason::Recovery)));
                }
                let unchanged = match (&progress, phase) {
                    (Progress::NotPickedUp, Phase::AwaitingPickup { .. }) => true,
                    (Progress::Prompting { .. }, Phase::WaitingForCard { .. }) => true,
                    (Progress::Authorized { .. }, Phase::Processing { .. }) => true,
                    (Progress::Ended(_), _) => false,
                    (_, Phase::Cancelling { .. }) => true,
                    _ => false,
                };
                Ok(if unchanged {
                    None
                } else {
                    Some(Event::Polled(progress))
                })
            }
        }
    }

    /// Reads the payment: the transaction when its id is known (one call per poll), the session
    /// otherwise, and the session again once the transaction has ended, for the reason why.
    pub(super) async fn poll(
        &self,
        session_id: &str,
        known_tx: Option<&str>,
        session: &mut Option<Session>,
        phase: &Phase,
    ) -> Result<Progress, ApiError> {
        let cancel = match phase {
            Phase::Cancelling { reason, .. } => Some(*reason),
            _ => None,
        };
        let tx_id = match known_tx {
            Some(id) => id.to_string(),
            None => {
                let s = self.gateway.get_session(session_id).await?;
                let tx_id = s.transaction_id.clone();
                *session = Some(s);
                match tx_id {
                    Some(id) => id,
                    None => {
                        let s = session.as_ref().map(|s| classify(s, None, cancel));
                        return Ok(s.unwrap_or(Progress::NotPickedUp));
                    }
                }
            }
        };
        let tx = self.gateway.get_transaction(&tx_id).await?;
        // A transaction that ended after the session was read: the session read just before it
        // may not have the event that says why yet (seen under load: a customer cancel taken
        // for a technical failure), so it is read again.
        // A paid transaction needs no reason, so an approval costs no extra read.
        if tx.status.is_final() && !tx.status.is_paid() {
            *session = Some(self.gateway.get_session(session_id).await?);
        }
        match session.as_ref() {
            Some(s) => Ok(classify(s, Some(&tx), cancel)),
            None => {
                let s = self.gateway.get_session(session_id).await?;
                let progress = classify(&s, Some(&tx), cancel);
                *session = Some(s);
                Ok(progress)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        let base = Duration::from_millis(500);
        for attempt in 0..20 {
            let d = backoff(base, attempt, None);
            assert!(d <= Duration::from_secs(10), "{d:?}");
        }
        assert!(backoff(base, 1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert!(backoff(base, 1, Some(Duration::from_secs(3600))) <= Duration::from_secs(60));
    }
}
