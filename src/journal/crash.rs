//! **Test hooks, never set on a kiosk**: kill the process right after an append, before the
//! call that append announced, the moment a power cut hurts most. The soak puts crashes exactly
//! between "journal" and "effect" with them, which a kill from outside only hits by luck; the
//! refund tests put one between the refund journal and the refund call, and one after the call.
//!
//! Compiled only with the `emulator` feature: the packaged kiosk has no such hook.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// One crash point: with `<env>=<n>` in the environment, the n-th [`Hook::hit`] of this run
/// kills the process with `SIGKILL`. Unset (or not a number) it does nothing.
pub struct Hook {
    env: &'static str,
    at: OnceLock<Option<u64>>,
    hits: AtomicU64,
}

impl Hook {
    /// A crash point armed by the variable `env`.
    pub const fn new(env: &'static str) -> Hook {
        Hook {
            env,
            at: OnceLock::new(),
            hits: AtomicU64::new(0),
        }
    }

    /// Counts one pass; kills the process on the pass the variable names.
    pub fn hit(&self) {
        let Some(at) = *self.at.get_or_init(|| {
            std::env::var(self.env)
                .ok()
                .and_then(|v| v.trim().parse().ok())
        }) else {
            return;
        };
        if self.hits.fetch_add(1, Ordering::SeqCst) + 1 == at {
            tracing::error!("{}={at}: killing the process here (test hook)", self.env);
            // SAFETY: kill(2) on our own pid takes no pointers; SIGKILL cannot be caught, so
            // nothing after this point runs, exactly like a power cut.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            std::process::abort();
        }
    }
}
