//! Commissioning a kiosk with nothing but a serial cable, from the config the package installs
//! and no technician: the first administrator by `setup`, the account, store, terminal and
//! scanner by `config set` and `config apply`, the API client by `credentials set`, `test
//! network`, the daemon started by `restart`, then `test terminal`: the first approved test
//! payment and its refund. The service manager is a stand-in `systemctl` that starts the real
//! daemon, as systemd would; the emulator's ledger judges what money moved.
//!
//! With `KIOSKPAY_TRANSCRIPT=FILE` the test also writes what the technician saw to `FILE`, as the
//! README's commissioning transcript is made.

use crate::console_harness::*;
use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kioskpay::emulator::{
    ACCOUNT_ID, CLIENT_ID, CLIENT_SECRET, PAYOUT_DESTINATION_ID, PROFILE_ID, STORE_ID,
};

/// A stand-in `systemctl` that starts (and restarts) the real daemon on `config`, as systemd
/// would; stopping it kills the daemon, so a failing test leaves none behind.
struct ServiceManager {
    pidfile: PathBuf,
    /// The `PATH` that puts the stand-in first.
    path: String,
}

impl ServiceManager {
    fn new(site: &Site, config: &Path) -> ServiceManager {
        let bin = site.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let pidfile = site.path().join("daemon.pid");
        let script = format!(
            "#!/bin/sh\n\
             case \"$1\" in\n\
             restart|start)\n\
             \x20 if [ -s {pid:?} ]; then kill $(cat {pid:?}) 2>/dev/null; while kill -0 $(cat {pid:?}) 2>/dev/null; do sleep 0.05; done; fi\n\
             \x20 {kioskpay:?} run --config {config:?} >> {log:?} 2>&1 < /dev/null &\n\
             \x20 echo $! > {pid:?};;\n\
             esac\n",
            pid = pidfile,
            kioskpay = env!("CARGO_BIN_EXE_kioskpay"),
            config = config,
            log = site.path().join("daemon.log"),
        );
        let stand_in = bin.join("systemctl");
        std::fs::write(&stand_in, script).unwrap();
        std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        ServiceManager { pidfile, path }
    }
}

impl Drop for ServiceManager {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) with a valid signal has no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// What a terminal shows: the console's bytes without carriage returns and its three VT100
/// sequences (erase to the end of the line, cursor left and right).
fn as_seen(screen: &str) -> String {
    let mut out = String::new();
    let mut chars = screen.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' | '\x07' => {}
            '\x1b' => {
                // ESC [ digits letter
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kiosk_is_commissioned_from_the_packaged_config_over_the_serial_console() {
    let Some(site) = Site::without_technicians() else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    // The config as the package installs it: placeholders, and no secret file yet.
    let config = site.path().join("kioskpay.toml");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/kioskpay.toml"),
        &config,
    )
    .unwrap();
    // The scanner: a serial line whose other end the test holds.
    let (_scanner_side, slave) = support::openpty();
    let scanner = site.path().join("scanner");
    std::os::unix::fs::symlink(&slave, &scanner).unwrap();
    let systemd = ServiceManager::new(&site, &config);
    let mut console = site.console(
        "commissioning",
        &[("PATH", &systemd.path)],
        &["--config", config.to_str().unwrap(), "--columns", "200"],
    );
    console.wake().await;

    // The first administrator.
    console.line("setup");
    console.expect("New administrator's id: ").await;
    console.line("kari");
    console.expect("not shown): ").await;
    console.line(KARI_PIN);
    console.expect("Same PIN again: ").await;
    console.line(KARI_PIN);
    console
        .expect("Administrator kari created. Type login kari.")
        .await;
    console.expect("kioskpay> ").await;
    let welcome = console.login(KARI_PIN).await;
    assert!(welcome.contains("Logged in as kari (admin)"), "{welcome}");

    // Who the kiosk is. An account alone would leave the packaged terminal on another account:
    // the answer says to set both in one line.
    let alone = console
        .ask(
            &format!("config set dintero.account_id {ACCOUNT_ID}"),
            PROMPT,
        )
        .await;
    assert!(
        alone.contains("store.terminal_id") && alone.contains("set in one line"),
        "{alone}"
    );
    let terminal = format!("{ACCOUNT_ID}-T0001");
    for edit in [
        format!("config set dintero.account_id={ACCOUNT_ID} store.terminal_id={terminal}"),
        "config set kiosk.id kiosk-7".to_string(),
        format!("config set dintero.profile_id {PROFILE_ID}"),
        format!("config set dintero.api_url {base}"),
        format!("config set dintero.checkout_url {base}"),
        format!(
            "config set dintero.client_secret_file {}",
            site.path().join("client_secret").display()
        ),
        format!("config set store.id {STORE_ID}"),
        format!("config set store.payout_destination_id {PAYOUT_DESTINATION_ID}"),
        format!("config set input.device {}", scanner.display()),
        format!(
            "config set display.png_dir {}",
            site.path().join("frames").display()
        ),
        format!("config set state.dir {}", site.state().display()),
    ] {
        let staged = console.ask(&edit, PROMPT).await;
        assert!(staged.contains("staged: "), "{edit}: {staged}");
    }
    let applied = console.ask("config apply", PROMPT).await;
    assert!(
        applied.contains("written to") && applied.contains("credentials set writes"),
        "{applied}"
    );
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(
        written.contains("terminal_id = \"T12345678-T0001\"")
            && written.contains("# The paired terminal"),
        "the packaged comments stay, the values change:\n{written}"
    );

    // The API client: the secret is typed unseen, written at 0600 and checked with a token.
    console.line("credentials set");
    console.expect("API client id [").await;
    console.line(CLIENT_ID);
    console.expect("API client secret (not shown): ").await;
    console.line(CLIENT_SECRET);
    let accepted = console.expect(PROMPT).await;
    assert!(accepted.contains("the API accepted them"), "{accepted}");
    let secret = site.path().join("client_secret");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let network = console.ask("test network", PROMPT).await;
    for step in ["dns      OK", "tcp      OK", "token    OK", "checkout OK"] {
        assert!(network.contains(step), "{step} missing:\n{network}");
    }

    // The daemon, started the way the kiosk's service manager does.
    let restarted = console.ask("restart", PROMPT).await;
    assert!(
        restarted.contains("kioskpay.service restarted; the daemon answers: idle"),
        "{restarted}\ndaemon log:\n{}",
        std::fs::read_to_string(site.path().join("daemon.log")).unwrap_or_default()
    );
    let status = console.ask("status", PROMPT).await;
    assert!(status.contains("state        idle"), "{status}");

    // The first payment: a test payment of 1.00 in maintenance, then its refund.
    let maintenance = console.ask("maintenance on", PROMPT).await;
    assert!(maintenance.contains("Maintenance on"), "{maintenance}");
    console.line("test terminal");
    let asked = console.expect("Type yes to go on: ").await;
    assert!(
        asked.contains(&format!("{terminal} ACTIVE")) && asked.contains("Pay 1.00 as a test?"),
        "{asked}"
    );
    console.line("yes");
    let approved = console.expect("Type yes to go on: ").await;
    assert!(
        approved.contains("test payment kiosk-7-")
            && approved.contains("approved")
            && approved.contains("Refund NOK 1.00?"),
        "{approved}"
    );
    console.line("yes");
    let refunded = console.expect(PROMPT).await;
    assert!(
        refunded.contains("Refunded NOK 1.00 of payment kiosk-7-"),
        "{refunded}"
    );
    let back = console.ask("maintenance off", PROMPT).await;
    assert!(back.contains("Maintenance off"), "{back}");
    console.line("logout");
    console.expect("Logged out.").await;

    // The ledger: one payment of 1.00 on the kiosk's terminal, refunded in full.
    let ledger = support::ledger(&base).await;
    let sessions = ledger["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{ledger}");
    assert_eq!(sessions[0]["terminal_id"], terminal.as_str(), "{ledger}");
    let reference = sessions[0]["merchant_reference"].as_str().unwrap();
    assert!(reference.starts_with("kiosk-7-"), "{ledger}");
    let txs = support::transactions_for(&ledger, reference);
    assert_eq!(txs.len(), 1, "{ledger}");
    assert_eq!(txs[0]["amount"], 100, "{ledger}");
    assert_eq!(txs[0]["refunded_amount"], 100, "{ledger}");

    let screen = console.screen();
    console.stop();
    drop(systemd);
    audit_verify(&site);
    assert_no_pin(&site, &[&screen]);
    assert!(
        !screen.contains(CLIENT_SECRET),
        "the secret was typed unseen"
    );
    if let Some(file) = std::env::var_os("KIOSKPAY_TRANSCRIPT") {
        std::fs::write(file, as_seen(&screen)).unwrap();
    }
    emulator.shutdown().await;
}
