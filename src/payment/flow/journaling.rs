//! Journal before effect: appends on the blocking pool, compaction, and the soak's crash hook.

use super::*;

/// **Test hook, never set on a kiosk.** With `KIOSKPAY_CRASH_AFTER_JOURNAL=<n>` in its
/// environment the process kills itself with `SIGKILL` right after its n-th successful journal
/// append of this run, before the call that append announced: the moment a power cut hurts
/// most. `kioskpay soak` uses it to put crashes exactly between "journal" and "effect", which a
/// kill from outside only hits by luck. Unset (or not a number) it does nothing.
///
/// Compiled only with the `emulator` feature: the packaged kiosk has no such hook.
#[cfg(feature = "emulator")]
pub const CRASH_AFTER_JOURNAL_ENV: &str = "KIOSKPAY_CRASH_AFTER_JOURNAL";

#[cfg(feature = "emulator")]
pub(super) fn crash_hook() {
    static HOOK: crate::journal::crash::Hook =
        crate::journal::crash::Hook::new(CRASH_AFTER_JOURNAL_ENV);
    HOOK.hit();
}

impl<G: Gateway> Flow<G> {
    /// Compacts the journal while no payment runs, so replay stays short on a kiosk that runs
    /// for years. Only finished payments beyond `keep_final` are dropped.
    pub(super) async fn compact(&self) {
        let journal = self.journal.clone();
        let keep = self.config.keep_final;
        let compacted = tokio::task::spawn_blocking(move || {
            let stats = lock(&journal).compact(keep);
            // The rewrite held every kept record in memory at once; without a trim the arena
            // that served it keeps those pages for good (see `allocator`).
            crate::allocator::release_free();
            stats
        });
        match compacted.await {
            Ok(Ok(stats)) => debug!(?stats, "journal compacted"),
            Ok(Err(e)) => {
                warn!(error = %e, "journal compaction failed; the journal is still valid")
            }
            Err(e) => warn!(error = %e, "journal compaction did not run"),
        }
    }

    /// Appends to the journal on the blocking pool (it fsyncs). A failure closes the health gate.
    pub(super) async fn write(&mut self, record: Record) -> Result<(), JournalError> {
        let journal = self.journal.clone();
        let result = match tokio::task::spawn_blocking(move || lock(&journal).append(&record)).await
        {
            Ok(result) => {
                #[cfg(feature = "emulator")]
                if result.is_ok() {
                    crash_hook();
                }
                result
            }
            Err(e) => Err(JournalError::Io {
                action: "append to",
                path: Default::default(),
                source: std::io::Error::other(e.to_string()),
            }),
        };
        if let Err(e) = &result {
            self.journal_failed(e);
        }
        result
    }

    /// Appends a record that follows an effect already made: a failure is logged loudly but the
    /// payment goes on (recovery can rebuild the missing step by reference).
    pub(super) async fn write_logged(&mut self, record: Record) {
        if let Err(e) = self.write(record).await {
            error!(error = %e, "journal write failed");
        }
    }
}
