//! Where the daemon's and the commands' logs go, and what they may never contain.
//!
//! Logs go to journald with structured fields when systemd started kioskpay with the journal as
//! stderr, and to stderr as text otherwise. Whatever filter the operator asks for, the HTTP and
//! TLS stacks' debug output (which dumps headers with the client secret and tokens) stays off.

/// Logs go to journald, with structured fields, when systemd started us with the journal as
/// stderr (`JOURNAL_STREAM` is set and names our stderr); to stderr as text otherwise. Display
/// failures are counted for the metrics on the way.
pub fn init_logging(filter: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let counting = crate::metrics::DisplayErrors::new(crate::metrics::process_counters());
    let journald = if stderr_is_journal() {
        tracing_journald::layer()
            .map(|l| l.with_syslog_identifier("kioskpay".into()))
            .ok()
    } else {
        None
    };
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(secret_safe_targets())
        .with(counting);
    let _ = match journald {
        Some(journald) => registry.with(journald).try_init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .try_init(),
    };
}

/// The HTTP and TLS libraries dump whole requests and responses below `info`: the Basic auth
/// header (the client secret), bearer tokens and the token response. A global filter of its own,
/// beside the user's, so that no `KIOSKPAY_LOG` (not `trace`, not `ureq=trace`, not a more
/// specific `ureq::…=trace`) can let them through.
fn secret_safe_targets() -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(
            SECRET_DUMPING_TARGETS
                .iter()
                .map(|target| (*target, LevelFilter::INFO)),
        )
}

/// Targets (and, by prefix, their modules) whose debug and trace events can carry secrets: the
/// client's HTTP and TLS stack, and the emulator's HTTP server, which receives the same headers.
const SECRET_DUMPING_TARGETS: [&str; 4] = ["ureq", "ureq_proto", "rustls", "hyper"];

/// Whether stderr is the journal: `JOURNAL_STREAM` is `<device>:<inode>` of the stream systemd
/// connected, and stays set in children whose stderr may have been redirected, so it is compared.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let stderr = std::fs::metadata("/proc/self/fd/2");
    stderr.is_ok_and(|m| dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()))
}
