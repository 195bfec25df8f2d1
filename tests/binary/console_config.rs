//! The console's configuration and access commands as an administrator uses them on a running
//! kiosk: `config set|diff|apply` with the daemon reloading, `apply --confirm-within` rolling
//! back by itself (also when the console is killed), `credentials set`, `pin change` and
//! `technician add|list|remove`; and a service technician refused each of them.

use crate::console_harness::*;
use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kioskpay::control::client::Client;
use kioskpay::control::protocol::ConfigState;

/// The daemon's config file, with a comment of the installer's that every edit must keep.
fn config_of(site: &Site) -> PathBuf {
    let path = site.path().join("kioskpay.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    if !text.starts_with("# installed") {
        std::fs::write(&path, format!("# installed by the site team\n{text}")).unwrap();
    }
    path
}

fn console_on(site: &Site, name: &str, config: &Path) -> Console {
    site.console(name, &[], &["--config", config.to_str().unwrap()])
}

/// The daemon's config state, once `done` holds for it.
async fn config_state(site: &Site, done: impl Fn(&ConfigState) -> bool) -> Option<ConfigState> {
    let socket = site.socket();
    support::wait_for(Duration::from_secs(30), async || {
        let mut client = Client::connect(&socket).await.ok()?;
        let state = client.status().await.ok()?.config;
        done(&state).then_some(state)
    })
    .await
}

/// Every file in the state directory but the audit log (which records each command), by name.
fn state_files(site: &Site) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(site.state())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.ends_with("audit.log"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_value_changes_nothing_and_a_valid_edit_is_applied_and_reloaded() {
    let Some(site) = Site::new("admin") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let daemon = Daemon::start(&site, &emulator.base_url()).await;
    let config = config_of(&site);
    let before = std::fs::read(&config).unwrap();
    let mut console = console_on(&site, "console", &config);
    console.wake().await;
    console.login(KARI_PIN).await;

    // Refused with the message `kioskpay check` prints for the same file, and nothing written.
    let state_before = state_files(&site);
    let refused = console
        .ask("config set payment.poll_interval_ms 5", PROMPT)
        .await;
    let bad = site.path().join("bad.toml");
    std::fs::write(
        &bad,
        String::from_utf8_lossy(&before).replace("poll_interval_ms = 100", "poll_interval_ms = 5"),
    )
    .unwrap();
    let check = support::kioskpay_bin()
        .unwrap()
        .args(["check", "--offline", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let check_says = String::from_utf8_lossy(&check.stderr);
    let message = "config key payment.poll_interval_ms = \"5\": expected 50 to 10000 milliseconds";
    assert!(check_says.contains(message), "{check_says}");
    assert!(refused.contains(message), "{refused}");
    assert_eq!(
        std::fs::read(&config).unwrap(),
        before,
        "the config file changed"
    );
    assert_eq!(state_files(&site), state_before, "a state file changed");
    let refused = console.ask("config set kiosk.language de", PROMPT).await;
    assert!(
        refused.contains("unknown variant `de`, expected `nb` or `en`"),
        "{refused}"
    );
    assert_eq!(std::fs::read(&config).unwrap(), before);
    let refused = console
        .ask("config set dintero.client_secret s3cr3t-typed-here", PROMPT)
        .await;
    assert!(refused.contains("credentials set"), "{refused}");
    assert!(!refused.contains("s3cr3t-typed-here"), "{refused}");
    let audit = std::fs::read_to_string(site.state().join("audit.log")).unwrap();
    assert!(!audit.contains("s3cr3t-typed-here"), "{audit}");

    // Two edits staged, seen, applied: the file keeps its comment and layout.
    let staged = console
        .ask("config set payment.poll_interval_ms 300", PROMPT)
        .await;
    assert!(
        staged.contains("staged: payment.poll_interval_ms = 300"),
        "{staged}"
    );
    console.ask("config set kiosk.language nb", PROMPT).await;
    assert_eq!(
        std::fs::read(&config).unwrap(),
        before,
        "set wrote the file"
    );
    let diff = console.ask("config diff", PROMPT).await;
    assert!(
        diff.contains("payment.poll_interval_ms: 100 -> 300")
            && diff.contains("kiosk.language: \"en\" -> \"nb\""),
        "{diff}"
    );
    let show = console.ask("config show", PROMPT).await;
    assert!(
        show.contains("client_secret_file = ") && show.contains("Edits are staged"),
        "{show}"
    );
    let applied = console.ask("config apply", PROMPT).await;
    assert!(
        applied.contains("the daemon reloaded it: in force now"),
        "{applied}"
    );
    let expected = String::from_utf8_lossy(&before)
        .replace("poll_interval_ms = 100", "poll_interval_ms = 300")
        .replace("language = \"en\"", "language = \"nb\"");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), expected);
    let state = config_state(&site, |_| true).await.unwrap();
    assert_eq!(state.file, config.display().to_string());
    assert!(state.needs_restart.is_empty(), "{state:?}");
    let log = std::fs::read_to_string(site.path().join("daemon.log")).unwrap();
    assert!(log.contains("config reloaded"), "{log}");
    let diff = console.ask("config diff", PROMPT).await;
    assert!(diff.contains("no staged edits"), "{diff}");

    // A file the daemon cannot load is not left for its next start: the previous one is back.
    console
        .ask(
            "config set dintero.client_secret_file /nonexistent/secret",
            PROMPT,
        )
        .await;
    let refused = console.ask("config apply", PROMPT).await;
    assert!(
        refused.contains("the daemon could not load the edited file: dintero.client_secret_file /nonexistent/secret")
            && refused.contains("the previous file is back"),
        "{refused}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), expected);

    // revert drops what is staged and leaves the file.
    console
        .ask("config set payment.poll_interval_ms 400", PROMPT)
        .await;
    let reverted = console.ask("config revert", PROMPT).await;
    assert!(reverted.contains("staged edits dropped"), "{reverted}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), expected);

    console.line("logout");
    console.expect("Logged out.").await;
    let screen = console.screen();
    assert!(!screen.contains(kioskpay::emulator::CLIENT_SECRET));
    assert_no_pin(&site, &[&screen]);
    audit_verify(&site);
    console.stop();
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_edit_is_rolled_back_even_when_the_console_is_killed() {
    let Some(site) = Site::new("admin") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let daemon = Daemon::start(&site, &emulator.base_url()).await;
    let config = config_of(&site);
    let before = std::fs::read(&config).unwrap();
    let previous = site.state().join("config.previous.toml");
    let mut console = console_on(&site, "first", &config);
    console.wake().await;
    console.login(KARI_PIN).await;

    // No confirm: the daemon goes back to the previous file at the deadline.
    console
        .ask("config set payment.poll_interval_ms 400", PROMPT)
        .await;
    let applied = console.ask("config apply --confirm-within 3", PROMPT).await;
    assert!(
        applied.contains("the daemon reloaded it") && applied.contains("Type confirm within 3 s"),
        "{applied}"
    );
    assert_ne!(std::fs::read(&config).unwrap(), before);
    let diff = console.ask("config diff", PROMPT).await;
    assert!(diff.contains("is rolled back in "), "{diff}");
    let status = console.ask("status", PROMPT).await;
    assert!(
        status.contains("CONFIRM      the applied edit is rolled back in "),
        "{status}"
    );
    let rolled_back = config_state(&site, |s| s.rolled_back_at.is_some()).await;
    let rolled_back = rolled_back.expect("the daemon never rolled the edit back");
    assert_eq!(rolled_back.file, previous.display().to_string());
    let status = console.ask("status", PROMPT).await;
    assert!(
        status.contains("ROLLED BACK  an unconfirmed edit was rolled back at")
            && !status.contains("CONFIRM "),
        "{status}"
    );
    // The next command puts the previous file back over the config file.
    let diff = console.ask("config diff", PROMPT).await;
    assert!(
        diff.contains("was not confirmed in time and was rolled back"),
        "{diff}"
    );
    assert_eq!(std::fs::read(&config).unwrap(), before, "not restored");

    // Confirmed in time: it stays.
    console
        .ask("config set payment.poll_interval_ms 500", PROMPT)
        .await;
    console.ask("config apply --confirm-within 3", PROMPT).await;
    let confirmed = console.ask("confirm", PROMPT).await;
    assert!(
        confirmed.contains("confirmed: the applied edit stays"),
        "{confirmed}"
    );
    let state = config_state(&site, |s| s.file == config.display().to_string())
        .await
        .unwrap();
    assert_eq!(state.confirm_deadline_unix_ms, None, "{state:?}");
    let confirmed_file = std::fs::read(&config).unwrap();
    assert!(String::from_utf8_lossy(&confirmed_file).contains("poll_interval_ms = 500"));
    let again = console.ask("confirm", PROMPT).await;
    assert!(
        again.contains("no applied config edit awaits a confirm"),
        "{again}"
    );

    // The console killed right after apply: the daemon still rolls back, and the next console
    // restores the file.
    console
        .ask("config set payment.poll_interval_ms 600", PROMPT)
        .await;
    console.line("config apply --confirm-within 3");
    console.expect("Type confirm within 3 s").await;
    let first_screen = console.screen();
    console.stop();
    let rolled_back = config_state(&site, |s| {
        s.file == previous.display().to_string() && s.confirm_deadline_unix_ms.is_none()
    })
    .await;
    assert!(rolled_back.is_some(), "the daemon never rolled back");
    let mut console = console_on(&site, "second", &config);
    console.wake().await;
    console.login(KARI_PIN).await;
    let show = console.ask("config show", PROMPT).await;
    assert!(show.contains("was rolled back"), "{show}");
    assert_eq!(std::fs::read(&config).unwrap(), confirmed_file);
    console.stop();
    assert_no_pin(&site, &[&first_screen]);
    daemon.stop();
}

/// A client secret the emulator refuses; it must not appear anywhere once the right one is back.
const BAD_SECRET: &str = "wrong-secret-7731";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_written_privately_checked_against_the_api_and_never_shown() {
    use std::os::unix::fs::PermissionsExt;
    let Some(site) = Site::new("admin") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let daemon = Daemon::start(&site, &emulator.base_url()).await;
    let config = config_of(&site);
    let config_before = std::fs::read(&config).unwrap();
    let secret_file = site.path().join("client_secret");
    let good = std::fs::read(&secret_file).unwrap();
    let mut console = console_on(&site, "console", &config);
    console.wake().await;
    console.login(KARI_PIN).await;

    // Refused by the API, and the previous ones put back.
    console.line("credentials set");
    console.expect("API client id [kiosk-demo]: ").await;
    console.line("");
    console.expect("API client secret (not shown): ").await;
    console.line(BAD_SECRET);
    console.expect("the API did not accept them: ").await;
    console
        .expect("Put the previous credentials back? Type yes to go on: ")
        .await;
    console.line("yes");
    console.expect("the previous ones are back").await;
    console.expect(PROMPT).await;
    assert_eq!(std::fs::read(&secret_file).unwrap(), good);
    assert_eq!(std::fs::read(&config).unwrap(), config_before);

    // A new client id goes into the config file, and back out with the previous secret.
    console.line("credentials set");
    console.expect("API client id [kiosk-demo]: ").await;
    console.line("another-client");
    console.expect("API client secret (not shown): ").await;
    console.line(kioskpay::emulator::CLIENT_SECRET);
    console.expect("written: client id another-client").await;
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("client_id = \"another-client\""));
    console.expect("Type yes to go on: ").await;
    console.line("yes");
    console.expect("the previous ones are back").await;
    console.expect(PROMPT).await;
    assert_eq!(std::fs::read(&config).unwrap(), config_before);
    assert_eq!(std::fs::read(&secret_file).unwrap(), good);

    // Refused and kept: the file holds what was typed, private.
    console.line("credentials set");
    console.expect("API client id [kiosk-demo]: ").await;
    console.line("kiosk-demo");
    console.expect("API client secret (not shown): ").await;
    console.line(BAD_SECRET);
    console.expect("Type yes to go on: ").await;
    console.line("no");
    console.expect("the new credentials stay written").await;
    console.expect(PROMPT).await;
    assert_eq!(
        std::fs::read_to_string(&secret_file).unwrap(),
        format!("{BAD_SECRET}\n")
    );

    // The right ones: accepted by the API through the daemon.
    console.line("credentials set");
    console.expect("API client id [kiosk-demo]: ").await;
    console.line("");
    console.expect("API client secret (not shown): ").await;
    console.line(kioskpay::emulator::CLIENT_SECRET);
    let accepted = console.expect(PROMPT).await;
    assert!(
        accepted.contains("the API accepted them") && accepted.contains("token issued"),
        "{accepted}"
    );
    assert_eq!(std::fs::read(&secret_file).unwrap(), good);
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read(&config).unwrap(), config_before);

    console.line("logout");
    console.expect("Logged out.").await;
    let screen = console.screen();
    console.stop();
    daemon.stop();
    let mut everything = site.everything_written();
    everything.push_str(&screen);
    assert!(
        !everything.contains(BAD_SECRET),
        "the refused secret was kept somewhere"
    );
    for shown in [
        screen,
        std::fs::read_to_string(site.state().join("audit.log")).unwrap(),
        std::fs::read_to_string(site.path().join("daemon.log")).unwrap(),
        std::fs::read_to_string(site.path().join("console.log")).unwrap(),
    ] {
        assert!(
            !shown.contains(kioskpay::emulator::CLIENT_SECRET),
            "{shown}"
        );
    }
    audit_verify(&site);
}

/// New PINs used below; like kari's, they must not appear in any output or file but the hashes.
const KARI_NEW_PIN: &str = "735194";
const OLA_PIN: &str = "591827";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_changes_their_pin_and_an_admin_manages_technicians() {
    let Some(site) = Site::new("admin") else {
        return;
    };
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;

    // The rules of `kioskpay technician add`.
    console.line("pin change");
    console.expect("Current PIN: ").await;
    console.line(KARI_PIN);
    console.expect("New PIN for kari: ").await;
    console.line("123456");
    console.expect("run of consecutive digits").await;
    console.expect(PROMPT).await;
    console.line("pin change");
    console.expect("Current PIN: ").await;
    console.line(KARI_PIN);
    console.expect("New PIN for kari: ").await;
    console.line(KARI_NEW_PIN);
    console.expect("The same PIN again: ").await;
    console.line(KARI_NEW_PIN);
    console.expect("PIN changed").await;
    console.line("logout");
    console.expect("Logged out.").await;
    console.wake().await;
    let welcome = console.login(KARI_NEW_PIN).await;
    assert!(welcome.contains("Logged in as kari (admin)"), "{welcome}");

    console.line("technician add ola --role service");
    console.expect("New PIN for ola: ").await;
    console.line(OLA_PIN);
    console.expect("The same PIN again: ").await;
    console.line(OLA_PIN);
    console.expect("technician ola added (service)").await;
    console.expect(PROMPT).await;
    let list = console.ask("technician list", PROMPT).await;
    assert!(
        list.lines()
            .any(|l| l.starts_with("kari") && l.contains("admin"))
            && list
                .lines()
                .any(|l| l.starts_with("ola") && l.contains("service")),
        "{list}"
    );
    let refused = console.ask("technician remove kari", PROMPT).await;
    assert!(refused.contains("cannot remove yourself"), "{refused}");
    let removed = console.ask("technician remove ola", PROMPT).await;
    assert!(removed.contains("technician ola removed"), "{removed}");
    let list = console.ask("technician list", PROMPT).await;
    assert!(!list.contains("ola"), "{list}");
    console.line("logout");
    console.expect("Logged out.").await;

    let screen = console.screen();
    assert_no_pin(&site, &[&screen]);
    let everything = format!("{}{screen}", site.everything_written());
    for pin in [KARI_NEW_PIN, OLA_PIN] {
        assert!(
            !everything.contains(pin),
            "a new PIN appears in an output or a file"
        );
    }
    audit_verify(&site);
    console.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_technician_may_change_their_pin_but_not_the_config_or_access() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let config = site.path().join("kioskpay.toml");
    support::write_config(site.path(), "http://127.0.0.1:9", "");
    let before = std::fs::read(&config).unwrap();
    let mut console = console_on(&site, "console", &config);
    console.wake().await;
    console.login(KARI_PIN).await;
    for command in [
        "config show",
        "config set kiosk.language nb",
        "config apply",
        "confirm",
        "credentials set",
        "technician list",
        "technician add ola --role admin",
    ] {
        let refused = console.ask(command, PROMPT).await;
        assert!(
            refused.contains("the service role may not; ask an administrator"),
            "{command}: {refused}"
        );
    }
    assert_eq!(std::fs::read(&config).unwrap(), before);
    assert!(!site.state().join("config.staged.toml").exists());
    console.line("pin change");
    console.expect("Current PIN: ").await;
    console.type_bytes(b"\x03");
    console.expect("cancelled: nothing was changed").await;
    console.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_applied_during_a_payment_lets_it_finish_approved() {
    let Some(site) = Site::new("admin") else {
        return;
    };
    // Real time: the customer takes two seconds to present the card, time enough to apply.
    let emulator = support::emulator(1.0).await;
    let mut daemon = Daemon::start(&site, &emulator.base_url()).await;
    let config = config_of(&site);
    let mut console = console_on(&site, "console", &config);
    console.wake().await;
    console.login(KARI_PIN).await;
    console
        .ask("config set payment.poll_interval_ms 400", PROMPT)
        .await;
    daemon.scan("25.00;RELOAD-1");
    console.expect("* payment started: kiosk-1-").await;
    console.line("config apply");
    console.expect("the daemon reloaded it: in force now").await;
    // Printed after the answer: the payment was still running when the reload came.
    let finished = console.expect("* payment finished: kiosk-1-").await;
    console.expect("\n").await;
    let listing = console.ask("payments 1", PROMPT).await;
    assert!(listing.contains("approved"), "{finished}\n{listing}");
    let ledger = support::ledger(&emulator.base_url()).await;
    let sessions = ledger["sessions"].as_array().map_or(0, Vec::len);
    assert_eq!(sessions, 1, "{ledger}");
    console.stop();
    daemon.stop();
}

/// `kioskpay run` on the site's config file as it is (`Daemon::start` writes a new one).
async fn daemon_on(site: &Site, config: &Path, log: &str) -> Daemon {
    use std::process::Stdio;
    let log = std::fs::File::create(site.path().join(log)).unwrap();
    let mut child = support::kioskpay_bin()
        .unwrap()
        .args(["run", "--config"])
        .arg(config)
        .env("KIOSKPAY_CONTROL_SOCKET", site.socket())
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    assert!(
        kiosk_state(site, "idle").await,
        "the daemon never became idle"
    );
    Daemon { child, stdin }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_after_a_missed_deadline_starts_on_the_previous_file() {
    let Some(site) = Site::new("admin") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let daemon = Daemon::start(&site, &emulator.base_url()).await;
    let config = config_of(&site);
    let before = std::fs::read(&config).unwrap();
    let mut console = console_on(&site, "console", &config);
    console.wake().await;
    console.login(KARI_PIN).await;
    console
        .ask("config set payment.poll_interval_ms 700", PROMPT)
        .await;
    console.ask("config apply --confirm-within 2", PROMPT).await;
    // Stopped before the deadline, started after it: nobody was there when it passed.
    daemon.stop();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let daemon = daemon_on(&site, &config, "daemon-2.log").await;
    let previous = site.state().join("config.previous.toml");
    let state = config_state(&site, |_| true).await.unwrap();
    assert_eq!(state.file, previous.display().to_string(), "{state:?}");
    let confirmed = console.ask("confirm", PROMPT).await;
    assert!(
        confirmed.contains("was not confirmed in time and was rolled back"),
        "{confirmed}"
    );
    assert_eq!(std::fs::read(&config).unwrap(), before);
    console.stop();
    daemon.stop();
}
