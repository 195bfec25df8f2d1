//! `test scanner|display|gpio` as a technician runs them at the console, against a real daemon
//! on the emulator, through [`crate::console_harness`].

use crate::console_harness::*;
use crate::support;

/// Sessions the emulator was asked to create, for any reference.
async fn sessions(base: &str) -> Vec<String> {
    let ledger = support::ledger(base).await;
    ledger["sessions"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s["merchant_reference"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_scanner_shows_the_next_scan_decoded_or_refused_and_never_pays_it() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let mut daemon = Daemon::start(&site, &base).await;
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;

    let help = console.ask("help test", PROMPT).await;
    assert!(
        help.contains("Example:") && help.contains("test scanner"),
        "{help}"
    );
    let refused = console.ask("test scanner", PROMPT).await;
    assert!(refused.contains("maintenance on first"), "{refused}");

    console.line("maintenance on");
    console.expect("Maintenance on").await;
    assert!(kiosk_state(&site, "technician").await);

    console.line("test scanner");
    console.expect("Scan a code now").await;
    daemon.scan("25.00;HWTEST-1");
    let shown = console.expect(PROMPT).await;
    assert!(
        shown.contains("format     plain")
            && shown.contains("amount     NOK 25.00")
            && shown.contains("reference  HWTEST-1")
            && shown.contains("nothing was paid"),
        "{shown}"
    );

    console.line("test scanner");
    console.expect("Scan a code now").await;
    daemon.scan("twenty crowns");
    let shown = console.expect(PROMPT).await;
    assert!(
        shown.contains("refused ") && shown.contains("would not charge"),
        "{shown}"
    );

    // ^C ends the wait; the next scan is the flow's again, which refuses it in maintenance.
    console.line("test scanner");
    console.expect("Scan a code now").await;
    console.type_bytes(b"\x03");
    console.expect("stopped before a scan").await;
    console.expect(PROMPT).await;
    daemon.scan("26.00;AFTER-THE-TEST");

    console.line("maintenance off");
    console.expect("Maintenance off").await;
    assert!(kiosk_state(&site, "idle").await);
    // Scans reach the flow in order: once this payment is over, any earlier scan that were
    // kept back for later would have been paid before it.
    daemon.scan("27.00;BACK-ON-SALE");
    console.expect("* payment finished: kiosk-1-").await;
    let created = sessions(&base).await;
    assert_eq!(
        created.len(),
        1,
        "only the scan after maintenance is paid: {created:?}"
    );

    let audit = std::fs::read_to_string(site.state().join("audit.log")).unwrap();
    assert!(audit.matches("test scanner").count() >= 4, "{audit}");
    console.stop();
    daemon.stop();
}

/// The newest frame the daemon's PNG panel wrote (`frame-NNNNN.png` in `<site>/frames`).
fn newest_frame(site: &Site) -> Option<Vec<u8>> {
    let newest = std::fs::read_dir(site.path().join("frames"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("frame-") && n.ends_with(".png"))
        .max()?;
    std::fs::read(site.path().join("frames").join(newest)).ok()
}

/// `kioskpay render --screen NAME` as the harness daemon's panel draws it (240×320, English).
fn rendered(site: &Site, name: &str) -> Vec<u8> {
    let out = site.path().join(format!("render-{name}.png"));
    let status = support::kioskpay_bin()
        .unwrap()
        .args(["render", "--lang", "en", "--screen", name, "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

/// Waits until the daemon's panel shows what `kioskpay render` draws for `name`.
async fn panel_shows(site: &Site, name: &str) {
    let expected = rendered(site, name);
    let shown = support::wait_for(ANSWER, async || {
        (newest_frame(site)? == expected).then_some(())
    })
    .await;
    assert!(shown.is_some(), "the panel never showed {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_display_puts_the_pattern_then_each_customer_screen_on_the_panel() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let daemon = Daemon::start(&site, &emulator.base_url()).await;
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;
    let refused = console.ask("test display", PROMPT).await;
    assert!(refused.contains("maintenance on first"), "{refused}");
    console.line("maintenance on");
    console.expect("Maintenance on").await;
    assert!(kiosk_state(&site, "technician").await);
    panel_shows(&site, "technician").await;

    console.line("test display");
    console.expect("1/").await;
    console.expect("test-pattern").await;
    console.expect("Enter: next screen, q: stop").await;
    panel_shows(&site, "test-pattern").await;
    console.line("");
    console.expect("starting").await;
    console.expect("Enter: next screen").await;
    console.line("");
    console.expect("3/").await;
    console.expect("idle").await;
    console.expect("Enter: next screen").await;
    panel_shows(&site, "idle").await;
    console.line("q");
    console
        .expect("3 of 33 screens shown; the technician screen is back")
        .await;
    panel_shows(&site, "technician").await;

    // ^C in the middle gives the panel back too.
    console.line("test display");
    console.expect("Enter: next screen").await;
    panel_shows(&site, "test-pattern").await;
    console.type_bytes(b"\x03");
    console.expect("the technician screen is back").await;
    panel_shows(&site, "technician").await;

    // Maintenance ending (another console, a script) ends a test left on the panel: customers
    // never see a test screen.
    console.line("test display");
    console.expect("Enter: next screen").await;
    panel_shows(&site, "test-pattern").await;
    let mut script = kioskpay::control::client::Client::connect(&site.socket())
        .await
        .unwrap();
    script.maintenance(false).await.unwrap();
    panel_shows(&site, "idle").await;
    console.stop();
    daemon.stop();
}

/// GPIO lines for a kiosk without GPIO hardware: the daemon's own seam
/// ([`kioskpay::gpio::GpioBackend`]), with edges the test sends and levels it records.
#[derive(Clone, Default)]
struct SimulatedPins {
    edges:
        std::sync::Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Sender<kioskpay::gpio::Edge>>>>,
    levels: std::sync::Arc<std::sync::Mutex<Vec<(u32, bool)>>>,
}

struct SimulatedOutput {
    line: u32,
    levels: std::sync::Arc<std::sync::Mutex<Vec<(u32, bool)>>>,
}

impl kioskpay::gpio::OutputLine for SimulatedOutput {
    fn set_high(&mut self, high: bool) -> Result<(), kioskpay::gpio::GpioError> {
        self.levels.lock().unwrap().push((self.line, high));
        Ok(())
    }
}

impl kioskpay::gpio::GpioBackend for SimulatedPins {
    fn watch(
        &mut self,
        _: &[kioskpay::gpio::InputRequest],
    ) -> Result<tokio::sync::mpsc::Receiver<kioskpay::gpio::Edge>, kioskpay::gpio::GpioError> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        *self.edges.lock().unwrap() = Some(tx);
        Ok(rx)
    }

    fn output(
        &mut self,
        line: u32,
        high: bool,
    ) -> Result<Box<dyn kioskpay::gpio::OutputLine>, kioskpay::gpio::GpioError> {
        self.levels.lock().unwrap().push((line, high));
        Ok(Box::new(SimulatedOutput {
            line,
            levels: self.levels.clone(),
        }))
    }
}

impl SimulatedPins {
    async fn edge(&self, line: u32, rising: bool, at_ms: u64) {
        let tx = self.edges.lock().unwrap().clone().expect("inputs watched");
        let at = std::time::Duration::from_millis(at_ms);
        tx.send(kioskpay::gpio::Edge { line, rising, at })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_gpio_shows_the_input_lines_change_live() {
    use kioskpay::control::server::{Observed, Server};
    use kioskpay::daemon::{InputWiring, Kiosk};
    let Some(site) = Site::new("service") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let config = support::write_config(
        site.path(),
        &emulator.base_url(),
        "[gpio]\nenabled = true\n[[gpio.buttons]]\npin = 5\namount = 2000\nactive_low = true\n\
         [gpio.busy]\npin = 27\n",
    );
    let config = kioskpay::config::Config::load(&config).unwrap();
    let client = kioskpay::dintero::client::Client::new(
        kioskpay::dintero::client::ClientConfig::from_config(&config.dintero).unwrap(),
    );
    let pins = SimulatedPins::default();
    let mut kiosk = Kiosk::start_with_gpio(
        &config,
        std::sync::Arc::new(client),
        InputWiring::External,
        Some(Box::new(pins.clone())),
    )
    .unwrap();
    let server = Server::bind(&site.socket()).await.unwrap();
    let reports = std::mem::replace(&mut kiosk.reports, tokio::sync::mpsc::unbounded_channel().1);
    let stop = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(server.serve(
        Observed {
            state: kiosk.state.clone(),
            reports,
            commands: kiosk.commands.clone(),
            hardware: kiosk.hardware.clone(),
            desk: None,
            health: None,
            config: None,
            state_dir: None,
        },
        stop.clone(),
    ));
    assert!(kiosk_state(&site, "idle").await);

    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;
    let refused = console.ask("test gpio", PROMPT).await;
    assert!(refused.contains("maintenance on first"), "{refused}");
    console.line("maintenance on");
    console.expect("Maintenance on").await;
    assert!(kiosk_state(&site, "technician").await);

    console.line("test gpio");
    let listed = console.expect("Enter (or ^C) stops watching").await;
    assert!(
        listed.contains("line 5") && listed.contains("preset button NOK 20.00"),
        "{listed}"
    );
    // Pressed: an active-low line falls.
    pins.edge(5, false, 1_000).await;
    console.expect(" active").await;
    pins.edge(5, true, 1_100).await;
    console.expect("inactive").await;
    console.line("");
    console
        .expect("Toggle an output for 1 s? Its line (27 busy output), or Enter to skip: ")
        .await;
    console.line("27");
    console.expect("Flip it for 1 s? Type yes to go on: ").await;
    let before = pins.levels.lock().unwrap().len();
    console.line("yes");
    let done = console.expect(PROMPT).await;
    assert!(
        done.contains("2 change(s) seen")
            && done.contains("line 27 was released for 1 s, then back"),
        "{done}"
    );
    // Busy is asserted (high) in maintenance: released for the toggle, then asserted again.
    assert_eq!(
        pins.levels.lock().unwrap()[before..],
        [(27, false), (27, true)]
    );
    // The press was a cart too, which the flow refused in maintenance: nothing was paid.
    assert!(sessions(&emulator.base_url()).await.is_empty());
    console.stop();
    stop.cancel();
    served.await.unwrap();
    kiosk.stop().await.unwrap();
}
