//! Recovery: payments the journal shows unfinished at start-up, and payments written off as not
//! created that turn up at Dintero later, settled with the same rules as a live payment.

use super::*;

impl<G: Gateway> Flow<G> {
    /// Resolves one payment the journal shows as unfinished.
    pub(super) async fn recover(
        &mut self,
        record: PaymentRecord,
        shutdown: Shutdown<'_>,
    ) -> Driven {
        let payment = Payment::from_record(&record, self.config.currency);
        info!(reference = %payment.merchant_reference, session_id = record.session_id.as_deref().unwrap_or("-"), "recovering an unfinished payment");
        // A payment reopened after a late create keeps its policy across a restart.
        let driving = match record.reopened_at {
            Some(_) => Driving::Withdrawal,
            None => Driving::Recovery,
        };
        self.settle(payment, record.session_id, driving, shutdown)
            .await
    }

    /// `resolve REF` from the console: settles the payment `reference` if the journal shows it
    /// unfinished, exactly as recovery at start-up would; anything else is left as it is.
    pub(super) async fn resolve(
        &mut self,
        reference: &str,
        shutdown: Shutdown<'_>,
    ) -> ControlFlow<()> {
        let dir = lock(&self.journal)
            .path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let replay = tokio::task::spawn_blocking(move || crate::journal::read_only(&dir)).await;
        let record = match replay {
            Ok(Ok(replay)) => replay.get(reference).cloned(),
            Ok(Err(e)) => {
                warn!(%reference, error = %e, "resolve: the journal cannot be read");
                None
            }
            Err(e) => {
                warn!(%reference, error = %e, "resolve: the journal read did not run");
                None
            }
        };
        match record {
            Some(record) if record.outcome.is_none() => {
                match self.recover(record, shutdown).await {
                    Driven::ShutDown => ControlFlow::Break(()),
                    Driven::Finished(_) => ControlFlow::Continue(()),
                }
            }
            Some(record) => {
                info!(%reference, outcome = ?record.outcome, "resolve: the payment already has its outcome");
                ControlFlow::Continue(())
            }
            None => {
                info!(%reference, "resolve: no such payment in the journal");
                ControlFlow::Continue(())
            }
        }
    }

    /// Drives a payment whose state the kiosk does not know to its outcome, and reports it as
    /// recovered.
    pub(super) async fn settle(
        &mut self,
        payment: Payment,
        session_id: Option<String>,
        driving: Driving,
        shutdown: Shutdown<'_>,
    ) -> Driven {
        let phase = Phase::Checking {
            payment: payment.clone(),
            session_id,
        };
        let deadline = Instant::now() + self.config.timeout;
        self.publish(&phase, deadline);
        let driven = self.drive(phase, deadline, driving, shutdown).await;
        if let Driven::Finished(outcome) = &driven {
            self.finish(&payment, outcome, true);
        }
        driven
    }

    /// Looks up the payments under late watch (see [`crate::payment::late`]). One that Dintero
    /// has after all is journaled as reopened, then settled like a payment found at start-up.
    /// A lookup that fails ends the round: the next health check tries again.
    pub(super) async fn look_for_late_creates(
        &mut self,
        mut shutdown: Shutdown<'_>,
    ) -> ControlFlow<()> {
        let all = std::mem::take(&mut self.look_for_all_late);
        for payment in self.late.due(all) {
            // Each lookup is a turn of the loop: many in a row must not look like a stuck flow
            // to the watchdog, whose period allows for three slow calls, not for a whole round.
            if let Some((heartbeat, _)) = &self.heartbeat {
                heartbeat.beat();
            }
            let reference = payment.merchant_reference.clone();
            let session_id = match self.find(&payment).await {
                Ok(Lookup::Found(found)) => found.0.id,
                Ok(Lookup::Nothing) => continue,
                Ok(Lookup::Foreign(detail)) => {
                    error!(%reference, %detail, "Dintero has a payment under this reference that is not this one; it is not taken for this cart (check that kiosk.id is this kiosk's own and that state.dir was not restored from a backup)");
                    continue;
                }
                Err(e) => {
                    debug!(%reference, error = %e, "could not look for a late create; trying again at the next health check");
                    return ControlFlow::Continue(());
                }
            };
            warn!(%reference, %session_id, "a payment written off as not created exists at Dintero after all; settling it");
            let reopened = Record::Reopened {
                merchant_reference: reference.clone(),
                session_id: session_id.clone(),
                at: now_rfc3339(),
            };
            if let Err(e) = self.write(reopened).await {
                error!(%reference, error = %e, "cannot journal the reopened payment; it stays under watch");
                return ControlFlow::Continue(());
            }
            self.late.found(&reference);
            if let Driven::ShutDown = self
                .settle(
                    payment,
                    Some(session_id),
                    Driving::Withdrawal,
                    shutdown.as_mut(),
                )
                .await
            {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}
