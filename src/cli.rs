//! The command line: one binary, one subcommand per job.
//!
//! Exit statuses are part of the interface scripts rely on: `0` success, `1` a run-time failure
//! (API refused, demo outcomes did not match the ledger), `2` a usage or configuration error
//! (the message names the key, the value and what is expected), and for `check` only `3`: the
//! file is valid but the API or the scanner is not there now.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::dintero::client::{Client, ClientConfig};
use crate::dintero::{ApiError, Gateway, TerminalStatus};
use crate::money::Language;

/// The examples under `kioskpay --help`: the test tooling's commands only where they exist.
#[cfg(feature = "emulator")]
const EXAMPLES: &str = "Examples:\n  kioskpay demo                                  # the whole loop on the embedded emulator\n  kioskpay check --config /etc/kioskpay/kioskpay.toml\n  kioskpay run --config /etc/kioskpay/kioskpay.toml\n  kioskpay emulator --listen 127.0.0.1:8787\n  kioskpay journal --config /etc/kioskpay/kioskpay.toml --json\n  kioskpay decode '399.00;ORDER-17'\n  kioskpay soak --payments 200 --fault-rate 0.2 --kills 20 --seed 7\n  sudo kioskpay technician add kari --role admin\n  kioskpay audit verify --config /etc/kioskpay/kioskpay.toml";
#[cfg(not(feature = "emulator"))]
const EXAMPLES: &str = "Examples:\n  kioskpay check --config /etc/kioskpay/kioskpay.toml\n  kioskpay run --config /etc/kioskpay/kioskpay.toml\n  kioskpay journal --config /etc/kioskpay/kioskpay.toml --json\n  kioskpay decode ']C141570800038243498020KID12345\\x1D390200039900'\n  sudo kioskpay technician add kari --role admin\n  kioskpay audit verify --config /etc/kioskpay/kioskpay.toml";

pub use crate::config::EXIT_CONFIG;

/// Exit status of `check` when the file is valid but something it needs is not there now: the
/// Dintero API does not answer, or the scanner device does not exist.
pub const EXIT_NOT_REACHABLE: u8 = 3;

/// The `kiosk.id` that `packaging/kioskpay.toml` ships with. Two kiosks left on it give out the
/// same merchant references.
const PACKAGED_KIOSK_ID: &str = "kiosk-1";

#[derive(Parser, Debug)]
#[command(
    name = "kioskpay",
    version,
    about = "Payment controller for an unattended kiosk with a Dintero in-person card terminal",
    long_about = "kioskpay takes cart totals from the kiosk's input unit (barcode scanner, stdin), \
creates a Dintero Checkout session for the paired card terminal, follows the payment to its \
outcome and shows every step on the kiosk's display.",
    after_help = EXAMPLES
)]
struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. `info`, `kioskpay=debug`. Default `info`; `warn` for
    /// `soak`, whose progress lines say what matters.
    #[arg(long, global = true, env = "KIOSKPAY_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the kiosk daemon: take carts, charge them on the terminal, show every step.
    #[command(
        after_help = "Example:\n  kioskpay run --config /etc/kioskpay/kioskpay.toml\n\nUnfinished payments in the journal are resolved before the first cart is taken.\nSIGTERM or Ctrl-C stops it; a payment in flight is resolved at the next start."
    )]
    Run {
        /// The config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    #[cfg(feature = "emulator")]
    /// Run the whole loop on the embedded Dintero emulator with a scripted list of carts.
    #[command(
        after_help = "Example:\n  kioskpay demo --frames /tmp/frames --lang en\n\nExits 0 only when every outcome matches the emulator's ledger."
    )]
    Demo {
        /// Where the customer screens are written as numbered PNG files.
        #[arg(long, value_name = "DIR", default_value = "demo-frames")]
        frames: PathBuf,
        /// Language of the customer screens.
        #[arg(long, value_enum, default_value = "nb")]
        lang: LangArg,
        /// Emulator time scale (1.0 = real time); the default keeps the demo under a minute.
        #[arg(long, default_value_t = 0.2)]
        time_scale: f64,
    },
    #[cfg(feature = "emulator")]
    /// Serve the Dintero emulator (API + simulated terminals) for manual testing.
    #[command(
        after_help = format!("Example:\n  kioskpay emulator --listen 127.0.0.1:8787 --time-scale 0.1\n  curl -s 127.0.0.1:8787/_emulator/ledger\n\nSeeded sandbox: account T12345678, client kiosk-demo / demo-secret,\nprofile T12345678.kiosk-in-person, store oslo-center, payout destination seller-1,\nterminals T12345678-T0001 and T12345678-T0002.\n\nThe amount picks the outcome, so a decline can be made on purpose (e.g. 149.51):\n{}", crate::emulator::OUTCOME_TABLE)
    )]
    Emulator {
        /// Address to listen on; keep it on loopback.
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: std::net::SocketAddr,
        /// Scales every simulated delay (0.01 makes a 3 s decline take 30 ms).
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// Lifetime of issued access tokens, in seconds.
        #[arg(long, default_value_t = 14400)]
        token_ttl: u64,
        /// Fault rules (JSON) to start with.
        #[arg(long, value_name = "FILE")]
        faults: Option<PathBuf>,
    },
    /// Validate a config file; where the API is reachable, get a token and read the terminal.
    #[command(
        after_help = "Example:\n  kioskpay check --config /etc/kioskpay/kioskpay.toml\n\nExit 0: everything checked is fine (with --offline: the file is valid);\n1: the API refused the credentials or the terminal is not ACTIVE;\n2: the file is invalid;\n3: the file is valid, but the Dintero API is not reachable or the scanner device\n   (input.device) is not present now (the daemon would wait and retry).\nA kiosk.id still at the packaged default \"kiosk-1\" is a warning; it does not change\nthe exit status."
    )]
    Check {
        /// The config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only validate the file; do not contact Dintero or look for the scanner (for
        /// ExecStartPre: the daemon itself waits for both).
        #[arg(long)]
        offline: bool,
    },
    /// Render one customer screen with sample data to a PNG (for docs and panel checks).
    #[command(
        after_help = "Examples:\n  kioskpay render --list\n  kioskpay render --screen approved --size 320x240 --lang en --out approved.png"
    )]
    Render {
        /// The screen's name (see --list).
        #[arg(long, required_unless_present = "list")]
        screen: Option<String>,
        /// Panel size, WIDTHxHEIGHT.
        #[arg(long, default_value = "240x320", value_parser = parse_size)]
        size: (u32, u32),
        /// Language of the texts.
        #[arg(long, value_enum, default_value = "nb")]
        lang: LangArg,
        /// Where to write the PNG.
        #[arg(long, value_name = "FILE.png", required_unless_present = "list")]
        out: Option<PathBuf>,
        /// List the screen names.
        #[arg(long)]
        list: bool,
    },
    /// Decode one scanned payment code and print, as JSON, what the kiosk would charge.
    #[command(
        after_help = "Examples:\n  kioskpay decode ']C1415708000382434980201234567\\x1D390200039900'\n  kioskpay decode 'https://id.example.com/415/7080003824349/8020/1234567?3902=39900'\n  printf ']E02012345019959' | kioskpay decode --config /etc/kioskpay/kioskpay.toml\n  kioskpay decode --config /etc/kioskpay/kioskpay.toml < scan.bin\n\nPrints {\"format\",\"amount\",\"currency\",\"reference\"} (amount in minor units) and exits 0,\nor {\"error\": \"...\"} and exits 1 when the kiosk would refuse the code; 2 on a bad config.\nWith --config the kiosk's currency, input.formats, input.ean13_rules and\ninput.signing_key_file apply; without it NOK and every format (signed codes need the key)."
    )]
    Decode {
        /// The config file (TOML); only `[kiosk]` currency and `[input]` are used.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The code as text, with `\x1D` for GS (any `\xNN` byte) and `\\` for a backslash;
        /// without it the raw bytes on stdin are read and one trailing line ending is dropped.
        /// A code may start with `-`: it is still the code, not an option.
        #[arg(allow_hyphen_values = true)]
        code: Option<String>,
    },
    #[cfg(feature = "emulator")]
    /// Chaos soak: the real daemon against a faulty emulator, killed and restarted, checked
    /// against the ledger.
    #[command(
        after_help = "Example:\n  kioskpay soak --payments 200 --fault-rate 0.2 --kills 20 --seed 7\n\nRuns `kioskpay run` as a child process against the embedded emulator with random faults\non every Dintero route, feeds carts on its stdin, SIGKILLs it --kills times (about half of\nthem right after a journal write) and restarts it. At the end the emulator's ledger must\nagree with the journal: no cart charged twice, every capture journaled as approved and\nvice versa, every journal record final, no session left open.\n\nState faults and shared ids:\n  kioskpay soak --payments 200 --kills 20 --lose-state 3 --damage-state 4 --kiosks 2\n--lose-state N restarts delete the state directory first (a re-imaged SD card) and\n--damage-state N restarts flip a bit in a journal line or cut the journal inside its last\nline or its newest intent (a garbled page); both wait until every payment in that journal is\nfinal (then a clean restart before that kiosk's next cart), and each is followed by a lost answer to the next session creation,\nso that the next payment is looked up by reference. --kiosks 2 runs a second daemon with\nthe same kiosk.id on the second terminal. No reference may then name two payments, no\napproval may rest on another payment's money, and a `conflict` must not hide a capture.\nExit 0: no violation; 1: violations (listed, work directory kept); 2: bad arguments."
    )]
    Soak {
        /// Carts to pay.
        #[arg(long, default_value_t = 200)]
        payments: usize,
        /// Chance that one Dintero call meets a fault (0.2 = one in five).
        #[arg(long, default_value_t = 0.2)]
        fault_rate: f64,
        /// How many times the daemon is killed with SIGKILL.
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// How many restarts first delete the kiosk's state directory (a re-imaged SD card);
        /// out of --kills, postponed while a payment is unfinished.
        #[arg(long, default_value_t = 0, value_name = "N")]
        lose_state: usize,
        /// How many restarts first damage the journal (a flipped bit, or a garbled last page);
        /// out of --kills, postponed while a payment is unfinished.
        #[arg(long, default_value_t = 0, value_name = "N")]
        damage_state: usize,
        /// Daemons run side by side on the same kiosk.id, each with its own state directory,
        /// terminal and carts (1 or 2).
        #[arg(long, default_value_t = 1, value_name = "N")]
        kiosks: usize,
        /// Seeds the carts, the fault dice, the kill plan and the state faults.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Emulator time scale (0.005: the terminal's 3 s decline takes 15 ms).
        #[arg(long, default_value_t = 0.005)]
        time_scale: f64,
        /// Work directory (config, journal, daemon.log) to use and keep; default: a temporary
        /// one, kept only when violations are found.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Print the final report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the payment journal (one line per payment, or JSON objects with --json).
    #[command(
        after_help = "Example:\n  kioskpay journal --config /etc/kioskpay/kioskpay.toml --json | jq 'select(.state != \"approved\")'"
    )]
    Journal {
        /// The config file (TOML); its `state.dir` holds the journal.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// One JSON object per payment per line.
        #[arg(long)]
        json: bool,
    },
    /// Add, remove or list the technicians who may log in on the serial console.
    #[command(
        subcommand,
        after_help = "Examples:\n  sudo kioskpay technician add kari --role admin\n  sudo kioskpay technician list\n  sudo kioskpay technician remove kari\n\nRoles: service (status, tests, logs, payments), refund (+ refund, void),\nadmin (+ config, credentials, technicians). There is no default PIN."
    )]
    Technician(TechnicianCommand),
    /// Check the technician console's audit log.
    #[command(
        subcommand,
        after_help = "Example:\n  kioskpay audit verify --config /etc/kioskpay/kioskpay.toml"
    )]
    Audit(AuditCommand),
}

/// `kioskpay audit …`
#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check that no line of audit.log was edited, removed, inserted or reordered.
    #[command(
        after_help = "Examples:\n  kioskpay audit verify --config /etc/kioskpay/kioskpay.toml\n  kioskpay audit verify --state-dir /var/lib/kioskpay\n\nWithout either, the default state directory /var/lib/kioskpay.\nExit 0: the chain is intact (a last line cut short by a power loss is reported, and is\nnot tampering); 1: broken, with the first line number where it breaks.\nThe last line's sha256 is printed: compare it with the copy in the daemon's log."
    )]
    Verify {
        /// The state directory holding audit.log.
        #[arg(long, value_name = "DIR", conflicts_with = "config")]
        state_dir: Option<PathBuf>,
        /// The config file (TOML); its `state.dir` holds audit.log.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// `kioskpay technician …`
#[derive(Subcommand, Debug)]
enum TechnicianCommand {
    /// Add a technician; asks for the PIN twice, hidden (the first line of stdin when it is not a
    /// terminal).
    #[command(
        after_help = "Examples:\n  sudo kioskpay technician add kari --role admin\n  printf '482915\\n' | kioskpay technician add ola --role service --file ./technicians.toml\n\nA PIN has 6 to 16 digits; one digit repeated (000000), runs (123456, 654321),\nrepeated groups (121212, 123123) and common patterns (112233) are refused.\nIt is stored only as an Argon2id hash, in a root-owned file of mode 0600.\nExit 0: added; 2: the PIN or the id was refused; 1: the file could not be read or written."
    )]
    Add {
        /// The technician's id, typed at `login` (a-z, 0-9, '.', '_', '-'; up to 32).
        name: String,
        /// What they may do: service, refund or admin.
        #[arg(long, value_enum)]
        role: crate::console::technicians::Role,
        /// The technicians file.
        #[arg(long, value_name = "PATH", default_value = crate::console::technicians::DEFAULT_FILE)]
        file: PathBuf,
    },
    /// Remove a technician.
    #[command(after_help = "Example:\n  sudo kioskpay technician remove kari")]
    Remove {
        /// The technician's id.
        name: String,
        /// The technicians file.
        #[arg(long, value_name = "PATH", default_value = crate::console::technicians::DEFAULT_FILE)]
        file: PathBuf,
    },
    /// List the technicians with their roles (never their PIN hashes).
    #[command(after_help = "Example:\n  sudo kioskpay technician list")]
    List {
        /// The technicians file.
        #[arg(long, value_name = "PATH", default_value = crate::console::technicians::DEFAULT_FILE)]
        file: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LangArg {
    Nb,
    En,
}

impl From<LangArg> for Language {
    fn from(l: LangArg) -> Language {
        match l {
            LangArg::Nb => Language::Nb,
            LangArg::En => Language::En,
        }
    }
}

/// Parses the command line, runs the command, maps errors to exit statuses.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        #[cfg(feature = "emulator")]
        Command::Soak { .. } => "warn",
        _ => "info",
    };
    init_logging(cli.log.as_deref().unwrap_or(default_log));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kioskpay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            let is_config = e
                .chain()
                .any(|c| c.downcast_ref::<crate::config::ConfigError>().is_some());
            eprintln!("kioskpay: {e:#}");
            if is_config {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs go to journald, with structured fields, when systemd started us with the journal as
/// stderr (`JOURNAL_STREAM` is set and names our stderr); to stderr as text otherwise. Display
/// failures are counted for the metrics on the way.
fn init_logging(filter: &str) {
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

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run { config } => run(config).await,
        #[cfg(feature = "emulator")]
        Command::Demo {
            frames,
            lang,
            time_scale,
        } => {
            crate::demo::run(crate::demo::DemoOptions {
                frames,
                lang: lang.into(),
                time_scale,
            })
            .await
        }
        #[cfg(feature = "emulator")]
        Command::Emulator {
            listen,
            time_scale,
            token_ttl,
            faults,
        } => emulator(listen, time_scale, token_ttl, faults).await,
        Command::Check { config, offline } => check(config, offline).await,
        #[cfg(feature = "emulator")]
        Command::Soak {
            payments,
            fault_rate,
            kills,
            lose_state,
            damage_state,
            kiosks,
            seed,
            time_scale,
            dir,
            json,
        } => {
            let options = crate::soak::SoakOptions {
                payments,
                fault_rate,
                kills,
                lose_state,
                damage_state,
                kiosks,
                seed,
                time_scale,
                dir,
                json,
            };
            if let Err(problem) = options.validate() {
                eprintln!("kioskpay: {problem}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            crate::soak::run(options).await
        }
        Command::Journal { config, json } => journal(config, json),
        Command::Technician(TechnicianCommand::Add { name, role, file }) => {
            crate::console::technicians::add_command(&file, &name, role)
        }
        Command::Technician(TechnicianCommand::Remove { name, file }) => {
            crate::console::technicians::remove_command(&file, &name)
        }
        Command::Technician(TechnicianCommand::List { file }) => {
            crate::console::technicians::list_command(&file)
        }
        Command::Audit(AuditCommand::Verify { state_dir, config }) => {
            crate::console::audit::verify_command(state_dir, config)
        }
        Command::Decode { config, code } => decode(config, code),
        Command::Render {
            screen,
            size,
            lang,
            out,
            list,
        } => render(screen, size, lang.into(), out, list),
    }
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or("expected WIDTHxHEIGHT, e.g. 240x320")?;
    let parse = |v: &str| v.parse::<u32>().ok().filter(|n| (64..=4096).contains(n));
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err("expected WIDTHxHEIGHT with each side from 64 to 4096, e.g. 240x320".into()),
    }
}

fn render(
    screen: Option<String>,
    size: (u32, u32),
    lang: Language,
    out: Option<PathBuf>,
    list: bool,
) -> Result<ExitCode> {
    let now = tokio::time::Instant::now();
    let samples = crate::display::sample_screens(lang, now);
    if list {
        for (name, _) in &samples {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = screen.unwrap_or_default();
    let Some((_, screen)) = samples.iter().find(|(n, _)| *n == name) else {
        eprintln!("kioskpay: no screen named {name:?}; `kioskpay render --list` names them");
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let png = crate::display::render_screen_png(screen, crate::display::Size::new(size.0, size.1));
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.png")));
    std::fs::write(&out, png).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

async fn run(path: PathBuf) -> Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    let config = Config::load(&path)?;
    let client = Client::new(ClientConfig::from_config(&config.dintero)?);
    tracing::info!(kiosk = %config.kiosk.id, terminal = %config.store.terminal_id, "kioskpay starting");
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut kiosk = crate::daemon::Kiosk::start(
        &config,
        Arc::new(client),
        crate::daemon::InputWiring::FromConfig,
    )
    .context("starting the kiosk")?;
    let token = kiosk.shutdown_token();
    let watchdog = crate::systemd::watchdog_from_env();
    let supervisor = tokio::spawn(crate::systemd::supervise(
        kiosk.liveness.clone(),
        kiosk.state.clone(),
        watchdog,
        crate::systemd::SdNotify::default(),
        token.clone().cancelled_owned(),
    ));
    let metrics = config.metrics.textfile.clone().map(|textfile| {
        let reports =
            std::mem::replace(&mut kiosk.reports, tokio::sync::mpsc::unbounded_channel().1);
        tokio::spawn(crate::metrics::run(
            crate::metrics::MetricsOptions {
                textfile,
                interval: config.metrics.interval(),
                state_dir: config.state.dir.clone(),
            },
            kiosk.counters.clone(),
            kiosk.state.clone(),
            reports,
            kiosk.liveness.clone(),
            token.clone().cancelled_owned(),
        ))
    });
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hangup.recv() => reload(&mut kiosk, &path),
        }
    }
    tracing::info!("stopping: no new carts; a payment in flight is journaled for the next start");
    kiosk.stop().await?;
    let _ = supervisor.await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP: re-reads the config file and puts what can change at run time in force. A file that
/// does not load leaves the running config as it is.
fn reload(kiosk: &mut crate::daemon::Kiosk, path: &std::path::Path) {
    let mut notifier = crate::systemd::SdNotify::default();
    use crate::systemd::Notifier as _;
    notifier.send(crate::systemd::Message::Reloading);
    match Config::load(path) {
        Ok(new) => match kiosk.reload(&new) {
            Ok(needs_restart) => tracing::info!(
                path = %path.display(),
                needs_restart = ?needs_restart,
                "config reloaded"
            ),
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; the running settings stay")
            }
        },
        Err(e) => tracing::error!(error = %e, "config reload failed; the running settings stay"),
    }
    notifier.send(crate::systemd::Message::Ready);
}

#[cfg(feature = "emulator")]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(feature = "emulator")]
async fn emulator(
    listen: std::net::SocketAddr,
    time_scale: f64,
    token_ttl: u64,
    faults: Option<PathBuf>,
) -> Result<ExitCode> {
    if !(time_scale > 0.0 && time_scale <= 100.0) {
        eprintln!("kioskpay: --time-scale {time_scale}: expected a number above 0 and at most 100");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    if !listen.ip().is_loopback() {
        eprintln!(
            "WARNING: --listen {listen} is not a loopback address: anyone who reaches it can use \
             the emulator's control API and its test credentials. Use 127.0.0.1 unless another \
             machine must reach it."
        );
    }
    let faults = match faults {
        Some(path) => match crate::emulator::FaultPlan::load(&path) {
            Ok(plan) => Some(plan),
            Err(e) => {
                eprintln!("kioskpay: --faults {}: {e:#}", path.display());
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; is another emulator running?"))?;
    let addr = listener.local_addr()?;
    eprintln!("Dintero emulator on http://{addr} (checkout and api); ledger: http://{addr}/_emulator/ledger; Ctrl-C stops");
    let config = crate::emulator::EmulatorConfig {
        time_scale,
        token_ttl: std::time::Duration::from_secs(token_ttl),
        faults,
        ..Default::default()
    };
    crate::emulator::serve(listener, config, wait_for_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn check(path: PathBuf, offline: bool) -> Result<ExitCode> {
    let config = Config::load(&path)?;
    println!("config {}: valid", path.display());
    println!(
        "  kiosk {} ({}, {}), max amount {}",
        config.kiosk.id,
        config.currency(),
        config.kiosk.language.code(),
        config.max_amount()
    );
    println!(
        "  account {} ({})",
        config.dintero.account_id,
        if config.dintero.account_id.starts_with('T') {
            "sandbox"
        } else {
            "production"
        }
    );
    println!(
        "  store {} terminal {} payout destination {}",
        config.store.id, config.store.terminal_id, config.store.payout_destination_id
    );
    println!("  journal in {}", config.state.dir.display());
    if config.kiosk.id == PACKAGED_KIOSK_ID {
        eprintln!(
            "WARNING: kiosk.id is still the packaged default {PACKAGED_KIOSK_ID:?}: every kiosk left \
             on it gives out the same merchant references. Set kiosk.id in {} to a name unique \
             to this kiosk (e.g. its hostname).",
            path.display()
        );
    }
    if offline {
        return Ok(ExitCode::SUCCESS);
    }
    let mut missing = false;
    if config.input.kind == crate::config::InputKind::Serial {
        let device = &config.input.device;
        if device.exists() {
            println!("scanner {}: present", device.display());
        } else {
            println!(
                "scanner {}: not present now; plug the scanner in, or set input.device (the \
                 daemon waits for it)",
                device.display()
            );
            missing = true;
        }
    }
    // The API's answer decides first (1 beats 3); a missing scanner alone is a 3.
    let found = if missing {
        ExitCode::from(EXIT_NOT_REACHABLE)
    } else {
        ExitCode::SUCCESS
    };
    let client = Client::new(ClientConfig::from_config(&config.dintero)?);
    match client.ensure_token().await {
        Ok(()) => println!("api {}: token OK", config.dintero.api_url),
        Err(e @ (ApiError::Unreachable { .. } | ApiError::Unknown { .. })) => {
            println!(
                "api {}: not reachable now ({e}); the file is valid, the kiosk will retry",
                config.dintero.api_url
            );
            return Ok(ExitCode::from(EXIT_NOT_REACHABLE));
        }
        Err(e) => {
            println!("api {}: {e}", config.dintero.api_url);
            return Ok(ExitCode::FAILURE);
        }
    }
    match client.terminal(&config.store.terminal_id).await {
        Ok(t) if t.status == TerminalStatus::Active => {
            println!(
                "terminal {}: ACTIVE ({})",
                t.terminal_id,
                t.device_serial_number
                    .as_deref()
                    .unwrap_or("serial unknown")
            );
            Ok(found)
        }
        Ok(t) => {
            println!(
                "terminal {}: {} — it will not take payments until it is ACTIVE",
                t.terminal_id,
                t.status.as_str()
            );
            Ok(ExitCode::FAILURE)
        }
        Err(ApiError::Auth { status: 403, .. }) => {
            println!(
                "terminal {}: the API client may not read terminals (403); payments may still work",
                config.store.terminal_id
            );
            Ok(found)
        }
        Err(e) => {
            println!("terminal {}: {e}", config.store.terminal_id);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn journal(path: PathBuf, json: bool) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(&path).map_err(|error| crate::config::ConfigError::Read {
            path: path.clone(),
            error,
        })?;
    let config = Config::parse(&text, &path)?;
    let replay = crate::journal::read_only(&config.state.dir)?;
    for problem in &replay.problems {
        eprintln!("journal problem: {problem}");
    }
    if json {
        for p in &replay.payments {
            println!("{}", crate::journal::summary_json(p));
        }
    } else {
        print!("{}", journal_table(&replay.payments));
    }
    Ok(ExitCode::SUCCESS)
}

/// `kioskpay journal` for a technician: amounts in major units (the journal keeps minor units),
/// when each payment started, and a last line that says how many are still unresolved.
fn journal_table(payments: &[crate::journal::PaymentRecord]) -> String {
    use std::fmt::Write;
    let rows: Vec<[String; 7]> = payments
        .iter()
        .map(|p| {
            // A payment whose intent was lost has no currency: its amount cannot be scaled.
            let amount = crate::money::Currency::from_code(&p.currency)
                .map(|c| crate::money::Money::new(p.amount, c).plain())
                .unwrap_or_else(|| "?".into());
            // RFC 3339 to the second: "2026-11-24T08:00:00.123Z" → "2026-11-24 08:00:00".
            let started = p.started_at.get(..19).unwrap_or("-").replace('T', " ");
            let state = match p.outcome {
                // A technician must look: another payment holds this one's reference.
                Some(crate::journal::Outcome::Conflict) => "CONFLICT".to_string(),
                Some(_) => p.state.clone(),
                None => format!("UNRESOLVED:{}", p.state),
            };
            [
                p.merchant_reference.clone(),
                started,
                amount,
                p.currency.clone(),
                state,
                p.session_id.clone().unwrap_or_else(|| "-".into()),
                p.transaction_id.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    // Each column as wide as its widest cell, so that long states
    // (`UNRESOLVED:waiting_for_card`) and kiosk ids do not shift the columns after them.
    let headings = [
        "merchant_reference",
        "started (UTC)",
        "amount",
        "cur",
        "state",
        "session",
        "transaction",
    ];
    let minimum = [28, 20, 12, 4, 17, 32, 0];
    let mut widths = [0usize; 7];
    for (i, width) in widths.iter_mut().enumerate() {
        *width = rows
            .iter()
            .map(|r| r[i].chars().count())
            .chain([headings[i].len(), minimum[i]])
            .max()
            .unwrap_or(0);
    }
    let line = |out: &mut String, cells: [&str; 7]| {
        let [reference, started, amount, currency, state, session, transaction] = cells;
        let _ = writeln!(
            out,
            "{reference:<w0$} {started:<w1$} {amount:>w2$} {currency:<w3$} {state:<w4$} {session:<w5$} {transaction}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
            w5 = widths[5],
        );
    };
    let mut out = String::new();
    line(&mut out, headings);
    for r in &rows {
        line(&mut out, std::array::from_fn(|i| r[i].as_str()));
    }
    let unresolved = payments.iter().filter(|p| p.outcome.is_none()).count();
    let plural = if payments.len() == 1 { "" } else { "s" };
    let _ = write!(out, "{} payment{plural}", payments.len());
    if unresolved > 0 {
        let _ = write!(
            out,
            ", {unresolved} unresolved: the daemon resolves them with Dintero before it takes a cart"
        );
    }
    let conflicts = payments
        .iter()
        .filter(|p| p.outcome == Some(crate::journal::Outcome::Conflict))
        .count();
    if conflicts > 0 {
        let _ = write!(
            out,
            ", {conflicts} CONFLICT: Dintero holds another payment under the reference; nothing \
             more was charged; look it up with `kioskpay journal --json` and in Dintero's \
             back office, and check that kiosk.id is this kiosk's own"
        );
    }
    out.push('\n');
    out
}

/// What `kioskpay decode` prints for a code the kiosk would charge, fields in this order.
#[derive(serde::Serialize)]
struct Decoded<'a> {
    format: &'a str,
    amount: u64,
    currency: &'a str,
    reference: Option<&'a str>,
}

/// Longest code `decode` reads from stdin: far above any barcode, low enough that a wrong file
/// piped in does not fill the memory.
const MAX_DECODE_INPUT: u64 = 64 * 1024;

fn decode(config: Option<PathBuf>, code: Option<String>) -> Result<ExitCode> {
    use std::io::Read;
    let mut decode_config = match config {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|error| {
                crate::config::ConfigError::Read {
                    path: path.clone(),
                    error,
                }
            })?;
            let mut config = Config::parse(&text, &path)?;
            config.input.load_signing_key()?;
            config.input.decode_config(config.currency())
        }
        None => crate::input::codes::DecodeConfig::new(crate::money::Currency::NOK),
    };
    decode_config.now_unix = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let raw = match code {
        Some(text) => match unescape(&text) {
            Ok(raw) => raw,
            Err(problem) => {
                eprintln!("kioskpay: the code argument {text:?}: {problem}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => {
            let mut raw = Vec::new();
            std::io::stdin()
                .lock()
                .take(MAX_DECODE_INPUT)
                .read_to_end(&mut raw)
                .context("reading the code from stdin")?;
            for ending in [&b"\r\n"[..], b"\n", b"\r"] {
                if let Some(stripped) = raw.strip_suffix(ending) {
                    raw.truncate(stripped.len());
                    break;
                }
            }
            raw
        }
    };
    match crate::input::codes::decode(&raw, &decode_config) {
        Ok(d) => {
            let answer = Decoded {
                format: d.format.name(),
                amount: d.amount.minor,
                currency: d.amount.currency.code(),
                reference: d.reference.as_deref(),
            };
            println!("{}", serde_json::to_string(&answer)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}", serde_json::json!({ "error": e.to_string() }));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Turns `\xNN` escapes into bytes and `\\` into a backslash, so that a GS (`\x1D`) or any other
/// byte a scanner sends can be typed in a shell.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(b'x' | b'X') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let byte = std::str::from_utf8(&hex)
                    .ok()
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("\\x must be followed by two hex digits, e.g. \\x1D for GS")?;
                out.push(byte);
            }
            _ => return Err("a backslash starts \\xNN (a byte) or \\\\ (a backslash)".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_reads_bytes_and_backslashes() {
        assert_eq!(unescape(r"a\x1Db\x1d\\").unwrap(), b"a\x1db\x1d\\");
        assert_eq!(unescape("ø").unwrap(), "ø".as_bytes());
        for bad in [r"\x1", r"\xZZ", r"\n", "\\"] {
            assert!(unescape(bad).is_err(), "{bad:?}");
        }
    }

    fn payment(reference: &str, amount: u64, currency: &str) -> crate::journal::PaymentRecord {
        crate::journal::PaymentRecord {
            merchant_reference: reference.into(),
            amount,
            currency: currency.into(),
            cart_reference: None,
            terminal_id: "T12345678-T0001".into(),
            session_id: None,
            transaction_id: None,
            state: "awaiting_pickup".into(),
            outcome: None,
            status: None,
            started_at: "2026-11-24T08:00:00.123456Z".into(),
            finished_at: None,
            reopened_at: None,
        }
    }

    #[test]
    fn the_journal_table_shows_major_units_and_counts_what_is_unresolved() {
        let mut done = payment("kiosk-1-20261124-000001", 39900, "NOK");
        done.outcome = Some(crate::journal::Outcome::Approved);
        done.state = "approved".into();
        let pending = payment("kiosk-1-20261124-000002", 5, "NOK");
        // A payment whose intent line was damaged: amount and currency are unknown.
        let mut lost = payment("kiosk-1-20261124-000003", 0, "");
        lost.started_at.clear();
        let table = journal_table(&[done, pending, lost]);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 5, "{table}");
        assert!(
            rows[1].contains("2026-11-24 08:00:00") && rows[1].contains(" 399.00 NOK  approved "),
            "{table}"
        );
        assert!(
            rows[2].contains(" 0.05 NOK  UNRESOLVED:awaiting_pickup "),
            "{table}"
        );
        assert!(
            rows[3].contains(" - ") && rows[3].contains(" ?      UNRESOLVED:"),
            "{table}"
        );
        assert_eq!(
            rows[4],
            "3 payments, 2 unresolved: the daemon resolves them with Dintero before it takes a cart"
        );
        assert_eq!(journal_table(&[]).lines().last(), Some("0 payments"));

        let mut waiting = payment("kiosk-1-20261124-000004", 100, "NOK");
        waiting.state = "waiting_for_card".into();
        waiting.session_id = Some("T12345678.4vXq2SmPnD8kTfWbE1yLcR".into());
        let table = journal_table(&[waiting, payment("kiosk-1-20261124-000005", 100, "NOK")]);
        let rows: Vec<&str> = table.lines().collect();
        let session_at = |row: &str, text: &str| row.find(text).expect(text);
        assert_eq!(
            session_at(rows[0], "session"),
            session_at(rows[1], "T12345678.4vXq2"),
            "{table}"
        );
        assert_eq!(
            session_at(rows[0], "session"),
            session_at(rows[2], "- "),
            "{table}"
        );
    }

    #[test]
    fn the_journal_table_marks_and_counts_conflicts_for_the_technician() {
        let mut conflict = payment("kiosk-1-7KQ2FX-20261204-000002", 45000, "NOK");
        conflict.outcome = Some(crate::journal::Outcome::Conflict);
        conflict.state = "conflict".into();
        let table = journal_table(&[conflict]);
        let rows: Vec<&str> = table.lines().collect();
        assert!(rows[1].contains(" 450.00 NOK  CONFLICT "), "{table}");
        assert!(
            rows[2].starts_with("1 payment, 1 CONFLICT: Dintero holds another payment"),
            "{table}"
        );
    }
}
