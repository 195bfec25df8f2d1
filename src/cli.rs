//! The command line: one binary, one subcommand per job.
//!
//! Exit statuses are part of the interface scripts rely on: `0` success, `1` a run-time failure
//! (API refused, demo outcomes did not match the ledger), `2` a usage or configuration error
//! (the message names the key, the value and what is expected).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::dintero::client::{Client, ClientConfig};
use crate::dintero::{ApiError, Gateway, TerminalStatus};
use crate::money::Language;

/// Exit status of a configuration or usage error.
pub const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "kioskpay",
    version,
    about = "Payment controller for an unattended kiosk with a Dintero in-person card terminal",
    long_about = "kioskpay takes cart totals from the kiosk's input unit (barcode scanner, stdin), \
creates a Dintero Checkout session for the paired card terminal, follows the payment to its \
outcome and shows every step on the kiosk's display.",
    after_help = "Examples:\n  kioskpay demo                                  # the whole loop on the embedded emulator\n  kioskpay check --config /etc/kioskpay/kioskpay.toml\n  kioskpay run --config /etc/kioskpay/kioskpay.toml\n  kioskpay emulator --listen 127.0.0.1:8787\n  kioskpay journal --config /etc/kioskpay/kioskpay.toml --json\n  kioskpay soak --payments 200 --fault-rate 0.2 --kills 20 --seed 7"
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
    /// Serve the Dintero emulator (API + simulated terminals) for manual testing.
    #[command(
        after_help = "Example:\n  kioskpay emulator --listen 127.0.0.1:8787 --time-scale 0.1\n  curl -s 127.0.0.1:8787/_emulator/ledger\n\nSeeded sandbox: account T12345678, client kiosk-demo / demo-secret,\nprofile T12345678.kiosk-in-person, store oslo-center, payout destination seller-1,\nterminals T12345678-T0001 and T12345678-T0002."
    )]
    Emulator {
        /// Address to listen on; keep it on loopback.
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
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
        after_help = "Example:\n  kioskpay check --config /etc/kioskpay/kioskpay.toml\n\nExit 0: the file is valid (and the API accepted it, or could not be reached);\n1: the API refused the credentials or the terminal is not ACTIVE; 2: the file is invalid."
    )]
    Check {
        /// The config file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only validate the file; do not contact Dintero.
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
    /// Chaos soak: the real daemon against a faulty emulator, killed and restarted, checked
    /// against the ledger.
    #[command(
        after_help = "Example:\n  kioskpay soak --payments 200 --fault-rate 0.2 --kills 20 --seed 7\n\nRuns `kioskpay run` as a child process against the embedded emulator with random faults\non every Dintero route, feeds carts on its stdin, SIGKILLs it --kills times (about half of\nthem right after a journal write) and restarts it. At the end the emulator's ledger must\nagree with the journal: no cart charged twice, every capture journaled as approved and\nvice versa, every journal record final, no session left open.\nExit 0: no violation; 1: violations (listed, work directory kept); 2: bad arguments."
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
        /// Seeds the carts, the fault dice and the kill plan.
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

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run { config } => run(config).await,
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
        Command::Emulator {
            listen,
            time_scale,
            token_ttl,
            faults,
        } => emulator(listen, time_scale, token_ttl, faults).await,
        Command::Check { config, offline } => check(config, offline).await,
        Command::Soak {
            payments,
            fault_rate,
            kills,
            seed,
            time_scale,
            dir,
            json,
        } => {
            let options = crate::soak::SoakOptions {
                payments,
                fault_rate,
                kills,
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
    let samples = crate::display::sample_states(now);
    if list {
        for (name, _) in &samples {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = screen.unwrap_or_default();
    let Some((_, state)) = samples.iter().find(|(n, _)| *n == name) else {
        eprintln!("kioskpay: no screen named {name:?}; `kioskpay render --list` names them");
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    let png =
        crate::display::render_png(state, lang, crate::display::Size::new(size.0, size.1), now);
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.png")));
    std::fs::write(&out, png).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

async fn run(path: PathBuf) -> Result<ExitCode> {
    let config = Config::load(&path)?;
    let client = Client::new(ClientConfig::from_config(&config.dintero)?);
    tracing::info!(kiosk = %config.kiosk.id, terminal = %config.store.terminal_id, "kioskpay starting");
    let kiosk = crate::daemon::Kiosk::start(
        &config,
        Arc::new(client),
        crate::daemon::InputWiring::FromConfig,
    )
    .context("starting the kiosk")?;
    let token = kiosk.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping");
        token.cancel();
    });
    kiosk.wait().await?;
    Ok(ExitCode::SUCCESS)
}

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

async fn emulator(
    listen: SocketAddr,
    time_scale: f64,
    token_ttl: u64,
    faults: Option<PathBuf>,
) -> Result<ExitCode> {
    if !(time_scale > 0.0 && time_scale <= 100.0) {
        eprintln!("kioskpay: --time-scale {time_scale}: expected a number above 0 and at most 100");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let faults = match faults {
        Some(path) => Some(
            crate::emulator::FaultPlan::load(&path)
                .with_context(|| format!("reading faults from {}", path.display()))?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; is another emulator running?"))?;
    let addr = listener.local_addr()?;
    eprintln!("Dintero emulator on http://{addr} (checkout and api); ledger: http://{addr}/_emulator/ledger; Ctrl-C stops");
    let config = crate::emulator::EmulatorConfig {
        time_scale,
        token_ttl: Duration::from_secs(token_ttl),
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
    if offline {
        return Ok(ExitCode::SUCCESS);
    }
    let client = Client::new(ClientConfig::from_config(&config.dintero)?);
    match client.ensure_token().await {
        Ok(()) => println!("api {}: token OK", config.dintero.api_url),
        Err(e @ (ApiError::Unreachable { .. } | ApiError::Unknown { .. })) => {
            println!(
                "api {}: not reachable now ({e}); the file is valid, the kiosk will retry",
                config.dintero.api_url
            );
            return Ok(ExitCode::SUCCESS);
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
            Ok(ExitCode::SUCCESS)
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
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("terminal {}: {e}", config.store.terminal_id);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn journal(path: PathBuf, json: bool) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(&path).map_err(|source| crate::config::ConfigError::Read {
            path: path.clone(),
            source,
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
        println!(
            "{:<28} {:>12} {:<4} {:<17} {:<32} transaction",
            "merchant_reference", "amount", "cur", "state", "session"
        );
        for p in &replay.payments {
            println!(
                "{:<28} {:>12} {:<4} {:<17} {:<32} {}",
                p.merchant_reference,
                p.amount,
                p.currency,
                p.state,
                p.session_id.as_deref().unwrap_or("-"),
                p.transaction_id.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
