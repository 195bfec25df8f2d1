//! The gates in front of a cart: the health gate (journal, API, terminal), the display gate, the
//! cart checks, and the set of paid carts that refuses a code paid already.

use super::*;

/// How long the health gate waits before asking again after one failed check.
pub(super) const HEALTH_RECHECK: Duration = Duration::from_millis(250);

/// A health gate that stays down for the same cause is logged again this often, with the number
/// of checks in between: the gate checks every few seconds while down.
pub(super) const HEALTH_LOG_EVERY: Duration = Duration::from_secs(600);

/// What the health gate last logged: each change (down with its cause, up again) is logged once,
/// at WARN and INFO; the same failure again only every [`HEALTH_LOG_EVERY`].
#[derive(Default)]
pub(super) struct HealthLog {
    last: Option<(Health, String, Instant)>,
    unlogged: u32,
}

impl HealthLog {
    /// A payment can take the gate down between checks (terminal offline, credentials refused);
    /// logged at the next check, so that the gate's coming back up follows its going down.
    fn note_between_checks(&mut self, health: &Health, now: Instant) {
        let logged_other = self.last.as_ref().is_some_and(|(last, ..)| last != health);
        if logged_other && *health != Health::Ready {
            self.note(health, "found by the last payment", now);
        }
    }

    fn note(&mut self, health: &Health, cause: &str, now: Instant) {
        if let Some((last, last_cause, at)) = &mut self.last {
            if last == health && last_cause == cause {
                if let Health::Unavailable(reason) = health {
                    if now.duration_since(*at) < HEALTH_LOG_EVERY {
                        self.unlogged += 1;
                    } else {
                        warn!(%reason, %cause, checks_since = self.unlogged + 1, "card payment still unavailable");
                        *at = now;
                        self.unlogged = 0;
                    }
                }
                return;
            }
        }
        match (health, &self.last) {
            (Health::Ready, Some((Health::Unavailable(was), ..))) => {
                info!(was = %was, "card payment available again")
            }
            (Health::Ready, _) => info!("card payment available"),
            (Health::Unavailable(reason), _) => {
                warn!(%reason, %cause, "card payment unavailable")
            }
        }
        self.last = Some((health.clone(), cause.to_string(), now));
        self.unlogged = 0;
    }
}

pub(super) fn unavailable_for(e: &ApiError) -> Health {
    Health::Unavailable(match e {
        ApiError::Auth { .. } | ApiError::Rejected { .. } => UnavailableReason::Credentials,
        ApiError::Unknown { .. } | ApiError::Unreachable { .. } => {
            UnavailableReason::ApiUnreachable
        }
    })
}

/// Resolves when the display reports a new health; never without a display to watch.
pub(super) async fn display_changed(
    display: &mut Option<watch::Receiver<PanelHealth>>,
) -> Result<(), watch::error::RecvError> {
    match display {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

/// The cart references of the newest approved payments with when each was approved (or,
/// for those from the journal, when the flow started), oldest first, at most `capacity`.
pub(super) struct PaidCarts {
    capacity: usize,
    /// Oldest first, so that the oldest is forgotten when the set is full.
    order: VecDeque<String>,
    /// When each reference in `order` was approved. A start replays thousands of paid carts:
    /// looking one up or replacing it must not scan the whole set each time (that was 17 % of
    /// a start with a 50,000-record journal).
    approved_at: HashMap<String, Instant>,
}

impl PaidCarts {
    pub(super) fn new(capacity: usize) -> PaidCarts {
        PaidCarts {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            approved_at: HashMap::new(),
        }
    }

    /// Whether `reference` was approved, within `window` when one is given.
    fn paid(&self, reference: &str, window: Option<Duration>) -> bool {
        self.approved_at
            .get(reference)
            .is_some_and(|at| window.is_none_or(|window| at.elapsed() < window))
    }

    pub(super) fn insert(&mut self, reference: String) {
        if self
            .approved_at
            .insert(reference.clone(), Instant::now())
            .is_some()
        {
            // Paid again (rare): it moves to the back, as the newest.
            self.order.retain(|r| *r != reference);
        }
        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.approved_at.remove(&oldest);
            }
        }
        self.order.push_back(reference);
    }
}

impl<G: Gateway> Flow<G> {
    /// The error code of a broken customer screen, if it is broken.
    pub(super) fn display_fault(&self) -> Option<String> {
        if self.display_gone {
            return Some("E-PANEL-GONE".into());
        }
        match self.display.as_ref().map(|rx| rx.borrow().clone()) {
            Some(PanelHealth::Broken { code }) => Some(code.to_string()),
            _ => None,
        }
    }

    /// Whether the customer can see what a payment does: a screen that works, or no screen
    /// that needs to.
    pub(super) fn display_ready(&self) -> bool {
        match &self.display {
            None => !self.display_gone,
            Some(rx) => *rx.borrow() == PanelHealth::Working,
        }
    }

    pub(super) fn on_display_change(&mut self, changed: Result<(), watch::error::RecvError>) {
        if changed.is_err() {
            error!("the customer display task ended; no payments until kioskpay restarts");
            self.display = None;
            self.display_gone = true;
        } else if let Some(rx) = self.display.as_mut() {
            match &*rx.borrow_and_update() {
                PanelHealth::Working => info!("customer display working; payments allowed"),
                PanelHealth::Broken { code } => {
                    warn!(
                        code,
                        "customer display broken; out of service until it works"
                    )
                }
                PanelHealth::Unknown => {}
            }
        }
        self.show_idle_unless_held();
    }

    /// Refuses a cart whose reference an approved payment already carries (approved within
    /// `window` when one is given).
    pub(super) fn already_paid(
        &self,
        cart: &Cart,
        window: Option<Duration>,
    ) -> Option<RefusalReason> {
        let reference = cart.reference.as_ref()?;
        if !self.paid_carts.paid(reference, window) {
            return None;
        }
        let e = CodeError::AlreadyPaid {
            reference: reference.clone(),
        };
        warn!(reason = %e, amount = %cart.amount, "code refused: an approved payment in the journal carries this cart reference");
        Some(RefusalReason::Code {
            detail: e.to_string(),
            customer: e.customer_reason(),
        })
    }

    /// Refuses what the flow cannot charge, before any call to Dintero.
    pub(super) fn refusal(&self, cart: &Cart) -> Option<RefusalReason> {
        // In maintenance only the technician's own test payment is taken.
        if self.maintenance && cart.source != crate::cart::CartSource::Console {
            return Some(RefusalReason::Unavailable);
        }
        if cart.amount.currency != self.config.currency {
            return Some(RefusalReason::WrongCurrency {
                given: cart.amount.currency.code().into(),
            });
        }
        if cart.amount.minor == 0 {
            return Some(RefusalReason::ZeroAmount);
        }
        if cart.amount.minor > self.config.max_amount.minor {
            return Some(RefusalReason::TooLarge {
                max: self.config.max_amount,
            });
        }
        if self.health != Health::Ready || !self.display_ready() {
            return Some(RefusalReason::Unavailable);
        }
        None
    }

    /// The health gate: a journal that takes writes, a valid token, and the terminal `ACTIVE`.
    pub(super) async fn check_health(&mut self) {
        let before = self.health.clone();
        self.health_log.note_between_checks(&before, Instant::now());
        let (mut health, mut cause) = match self.storage_health().await {
            Some(unavailable) => (
                unavailable,
                "the journal takes no writes (see the error logged before)".to_string(),
            ),
            None => self.read_health().await,
        };
        if before == Health::Ready
            && health == Health::Unavailable(UnavailableReason::ApiUnreachable)
        {
            // One lost answer must not turn a customer away: ask once more before believing it.
            debug!(%cause, "health check failed once; asking again before refusing carts");
            tokio::time::sleep(HEALTH_RECHECK).await;
            (health, cause) = self.read_health().await;
        }
        self.health = health;
        self.health_log.note(&self.health, &cause, Instant::now());
        let period = match self.health {
            Health::Ready => self.config.health_interval,
            Health::Unavailable(_) => self.config.health_interval.min(Duration::from_secs(5)),
        };
        self.next_health = Instant::now() + period;
    }

    /// The journal's part of the health gate: `None` when payments can be journaled. After a
    /// failed journal write only a journal append proves it: a [`Record::Sequence`], which
    /// belongs to no payment and repeats the last sequence number handed out.
    pub(super) async fn storage_health(&mut self) -> Option<Health> {
        let unavailable = Some(Health::Unavailable(UnavailableReason::Storage));
        if self.journal_poisoned {
            return unavailable;
        }
        if self.storage_failed {
            let last = lock(&self.journal).next_sequence().saturating_sub(1);
            if self.write(Record::Sequence { last }).await.is_err() {
                return unavailable;
            }
            info!("the journal takes writes again");
            self.storage_failed = false;
            return None;
        }
        let dir = lock(&self.journal).path().parent()?.to_owned();
        let probed = tokio::task::spawn_blocking(move || {
            crate::payment::storage::probe(&dir).map_err(|e| (dir, e))
        })
        .await;
        match probed {
            Ok(Ok(())) => None,
            Ok(Err((dir, e))) => {
                let e = JournalError::Io {
                    action: "write a probe file in",
                    path: dir,
                    source: e,
                };
                error!(error = %e, "the state directory takes no writes; refusing card payments until the journal does");
                self.journal_failed(&e);
                unavailable
            }
            Err(e) => {
                warn!(error = %e, "the storage probe did not run; trying again at the next health check");
                None
            }
        }
    }

    /// A journal write failed: the gate closes until a journal append succeeds (a poisoned
    /// journal: until a restart).
    pub(super) fn journal_failed(&mut self, e: &JournalError) {
        if matches!(e, JournalError::Poisoned { .. }) && !self.journal_poisoned {
            error!(error = %e, "out of service (E-JOURNAL-RESTART) until kioskpay is restarted");
            self.journal_poisoned = true;
        }
        self.storage_failed = true;
        self.health = Health::Unavailable(UnavailableReason::Storage);
        self.next_health = self
            .next_health
            .min(Instant::now() + self.config.health_interval.min(Duration::from_secs(5)));
    }

    /// One reading of the health gate: a valid token, and the terminal's status; with the cause
    /// an operator needs when it is not ready.
    pub(super) async fn read_health(&mut self) -> (Health, String) {
        match self.gateway.ensure_token().await {
            Err(e) => (unavailable_for(&e), e.to_string()),
            Ok(()) => match self.gateway.terminal(self.config.terminal_id()).await {
                Ok(t) if t.status == TerminalStatus::Active => (Health::Ready, String::new()),
                Ok(t) => (
                    Health::Unavailable(UnavailableReason::TerminalNotActive(
                        t.status.as_str().to_string(),
                    )),
                    format!(
                        "Dintero says terminal {} is {}",
                        t.terminal_id,
                        t.status.as_str()
                    ),
                ),
                Err(ApiError::Auth { status: 403, .. }) => {
                    if !self.terminal_scope_warned {
                        warn!("the API client may not read terminals (403); the health gate checks the API alone");
                        self.terminal_scope_warned = true;
                    }
                    (Health::Ready, String::new())
                }
                Err(e @ ApiError::Rejected { .. }) => (
                    Health::Unavailable(UnavailableReason::TerminalNotActive(
                        e.code().unwrap_or("NOT_FOUND").to_string(),
                    )),
                    format!(
                        "terminal {} lookup refused: {e}; check store.terminal_id",
                        self.config.terminal_id()
                    ),
                ),
                Err(e) => (unavailable_for(&e), e.to_string()),
            },
        }
    }

    pub(super) fn note_api_error(&mut self, e: &ApiError) {
        match e {
            ApiError::Auth { .. } => {
                self.health = Health::Unavailable(UnavailableReason::Credentials)
            }
            ApiError::Unreachable { .. } => {
                self.health = Health::Unavailable(UnavailableReason::ApiUnreachable)
            }
            _ => return,
        }
        self.next_health = Instant::now() + self.config.health_interval.min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_carts_forget_the_oldest_when_full() {
        let mut paid = PaidCarts::new(2);
        for reference in ["a", "b", "c"] {
            paid.insert(reference.into());
        }
        assert!(!paid.paid("a", None));
        assert!(paid.paid("b", None));
        assert!(paid.paid("c", None));
    }

    #[test]
    fn a_cart_paid_again_becomes_the_newest() {
        let mut paid = PaidCarts::new(2);
        paid.insert("a".into());
        paid.insert("b".into());
        paid.insert("a".into());
        paid.insert("c".into());
        assert!(paid.paid("a", None), "a was paid after b, so b goes first");
        assert!(!paid.paid("b", None));
        assert!(paid.paid("c", None));
        assert_eq!(paid.order.len(), paid.approved_at.len());
    }

    #[test]
    fn a_window_limits_how_long_a_cart_counts_as_paid() {
        let mut paid = PaidCarts::new(4);
        paid.insert("a".into());
        assert!(paid.paid("a", Some(Duration::from_secs(3600))));
        assert!(!paid.paid("a", Some(Duration::ZERO)));
        assert!(!paid.paid("z", None));
    }
}
