//! The parts around the payment flow that `status` reports — the API and its token, the
//! terminal, the scanner, the display, GPIO and the disk — and the problems among them, each
//! with its short code ([`crate::state::code`]).
//!
//! Everything here is read, never asked for: the API figures are what the daemon's own client
//! saw on its newest calls (the payment flow's and the health gate's), the terminal's status
//! is the health gate's newest reading, the scanner's and the display's come from their tasks'
//! reports. Reading `status` therefore costs Dintero nothing, however often a technician asks.

use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::watch;

use super::protocol::{Health, Problem};
use crate::dintero::client::Client;
use crate::dintero::TerminalStatus;
use crate::messages::PanelHealth;
use crate::state::code;

/// Below this much free space in the state directory, `status` shows [`code::DISK`]: the
/// journal appends a few hundred bytes per payment, but logs and updates share the card.
pub const DISK_LOW_BYTES: u64 = 64 * 1024 * 1024;

/// Where the daemon's parts report.
pub struct Sources {
    /// The daemon's API client (a clone shares what the flow's calls saw).
    pub client: Client,
    /// Whether the scanner is there; `None` when the kiosk has no serial scanner.
    pub scanner: Option<watch::Receiver<bool>>,
    /// The input kind, for "not used (input.kind = …)".
    pub input_kind: String,
    /// The customer display's reports; `None` without a customer-facing panel.
    pub display: Option<watch::Receiver<PanelHealth>>,
    /// `display.kind`, shown when there is no customer-facing panel to report.
    pub display_kind: String,
    /// Whether GPIO is configured (the daemon does not start when it cannot open it).
    pub gpio: bool,
    /// The state directory (the journal's).
    pub state_dir: PathBuf,
}

impl Sources {
    /// The parts now, and the problems among them besides `flow_problem` (the one the payment
    /// flow shows, if any).
    pub fn read(&self, flow_problem: Option<Problem>) -> Health {
        let seen = self.client.seen();
        let now = Instant::now();
        let ago = |at: Instant| now.saturating_duration_since(at).as_secs();
        let mut problems: Vec<Problem> = flow_problem.into_iter().collect();
        let mut add = |code: &str, message: String| {
            if !problems.iter().any(|p| p.code == code) {
                problems.push(Problem {
                    code: code.into(),
                    message,
                });
            }
        };
        if let Some(call) = &seen.last_call {
            if let Some(failure) = &call.failure {
                add(
                    code::NET,
                    format!("the newest call to Dintero failed: {failure}"),
                );
            }
        }
        if let Some((status, _)) = &seen.terminal {
            if *status != TerminalStatus::Active {
                add(
                    code::TERM,
                    format!("Dintero says the terminal is {}", status.as_str()),
                );
            }
        }
        let scanner = match &self.scanner {
            Some(rx) if *rx.borrow() => "present".to_string(),
            Some(_) => {
                add(code::SCANNER, "the scanner is not there".into());
                "absent".to_string()
            }
            None => format!("not used (input.kind = {})", self.input_kind),
        };
        let display = match self.display.as_ref().map(|rx| rx.borrow().clone()) {
            None => format!("{} (no panel to watch)", self.display_kind),
            Some(PanelHealth::Unknown) => "no frame yet".to_string(),
            Some(PanelHealth::Working) => "working".to_string(),
            Some(PanelHealth::Broken { code }) => {
                add(code, "the customer display does not work".into());
                format!("broken ({code})")
            }
        };
        let disk_free_bytes = free_bytes(&self.state_dir);
        if let Some(free) = disk_free_bytes.filter(|f| *f < DISK_LOW_BYTES) {
            add(
                code::DISK,
                format!(
                    "only {} MiB free for the state directory {}",
                    free / (1024 * 1024),
                    self.state_dir.display()
                ),
            );
        }
        Health {
            terminal: seen.terminal.as_ref().map(|(s, _)| s.as_str().to_string()),
            terminal_seen_s: seen.terminal.as_ref().map(|(_, at)| ago(*at)),
            api_reachable: seen.last_call.as_ref().map(|c| c.failure.is_none()),
            api_rtt_ms: seen
                .last_call
                .as_ref()
                .map(|c| u64::try_from(c.round_trip.as_millis()).unwrap_or(u64::MAX)),
            api_seen_s: seen.last_call.as_ref().map(|c| ago(c.at)),
            token_age_s: seen.token_fetched.map(ago),
            scanner,
            display,
            gpio: if self.gpio {
                "in use"
            } else {
                "not configured"
            }
            .into(),
            disk_free_bytes,
            problems,
        }
    }
}

/// Free bytes for an unprivileged writer in the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs(3) reads the NUL-terminated path and writes only into `stat`, which we
    // own and read only after it reported success.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) != 0 {
            return None;
        }
        stat
    };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_and_a_missing_directory_has_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some_and(|f| f > 0));
        assert_eq!(free_bytes(&dir.path().join("gone")), None);
    }
}
