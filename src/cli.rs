//! The command line: one binary, one subcommand per job.
//!
//! Exit statuses are part of the interface scripts rely on: `0` success, `1` a run-time failure
//! (API refused, demo outcomes did not match the ledger), `2` a usage or configuration error
//! (the message names the key, the value and what is expected), and for `check` only `3`: the
//! file is valid but the API or the scanner is not there now.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use crate::commands::check::EXIT_NOT_REACHABLE;
use crate::commands::{check::check, decode::decode, journal::journal, render::render};
use crate::money::Language;

/// The examples under `kioskpay --help`: the test tooling's commands only where they exist.
#[cfg(feature = "emulator")]
const EXAMPLES: &str = "Examples:\n  kioskpay demo                                  # the whole loop on the embedded emulator\n  kioskpay check --config /etc/kioskpay/kioskpay.toml\n  kioskpay run --config /etc/kioskpay/kioskpay.toml\n  kioskpay emulator --listen 127.0.0.1:8787\n  kioskpay journal --config /etc/kioskpay/kioskpay.toml --json\n  kioskpay decode '399.00;ORDER-17'\n  kioskpay soak --payments 200 --fault-rate 0.2 --kills 20 --seed 7\n  kioskpay bench --quick\n  sudo kioskpay technician add kari --role admin\n  sudo kioskpay console --device /dev/serial0\n  kioskpay audit verify --config /etc/kioskpay/kioskpay.toml";
#[cfg(not(feature = "emulator"))]
const EXAMPLES: &str = "Examples:\n  kioskpay check --config /etc/kioskpay/kioskpay.toml\n  kioskpay run --config /etc/kioskpay/kioskpay.toml\n  kioskpay journal --config /etc/kioskpay/kioskpay.toml --json\n  kioskpay decode ']C141570800038243498020KID12345\\x1D390200039900'\n  sudo kioskpay technician add kari --role admin\n  sudo kioskpay console --device /dev/serial0\n  kioskpay audit verify --config /etc/kioskpay/kioskpay.toml";

pub use crate::config::EXIT_CONFIG;

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
        /// Signs every callback with the secret in FILE (`Dintero-Signature`), as a kiosk's
        /// `callback.signature_secret_file` expects.
        #[arg(long, value_name = "FILE")]
        signature_secret_file: Option<PathBuf>,
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
    #[cfg(feature = "emulator")]
    /// Measure the end-to-end figures (outcome → screen, requests, scan → create, warm path,
    /// start-up, memory, idle, display) against in-process emulators and print one table.
    #[command(
        after_help = "Examples:\n  kioskpay bench                     # the full run, about ten minutes\n  kioskpay bench --quick             # a smoke run, about a minute\n  kioskpay bench --payments 80 --json /tmp/bench.json\n  kioskpay bench --daemon /usr/bin/kioskpay   # start-up and memory of the package\n\nPrints a table (figure | target | measured | verdict) on stdout, progress on stderr,\nand writes the same rows as JSON. Every polling policy runs side by side in real time\n(adaptive, fixed 0.5/1/5 s, adaptive with signed callbacks, with callbacks lost).\nExit 0: every judged figure meets its target; 1: one does not (its row says FAIL);\n2: bad arguments. Numbers depend on the machine: compare runs on the same one."
    )]
    Bench {
        /// Payments per polling policy in the outcome figure (default: 40, or 6 with --quick).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
        payments: Option<u64>,
        /// A short run with fewer kiosks and samples (about a minute).
        #[arg(long)]
        quick: bool,
        /// Where the table is written as JSON.
        #[arg(long, value_name = "PATH", default_value = "target/bench.json")]
        json: PathBuf,
        /// The kioskpay binary whose `run` the start-up and memory figures start (default: this
        /// one, which carries the emulator; give the packaged build to measure what ships).
        #[arg(long, value_name = "PATH")]
        daemon: Option<PathBuf>,
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
    /// The technician console on a serial line or this terminal (dormant until Enter is pressed
    /// three times within two seconds).
    #[command(
        after_help = "Examples:\n  sudo kioskpay console --device /dev/serial0 --baud 115200\n  sudo kioskpay console --stdio --columns 132         # over SSH, a wide terminal\n  printf '\\r\\r\\rhelp\\r' | kioskpay console --stdio --json --state-dir /tmp/k\n\nPress Enter three times within two seconds to wake it, then: login ID (the PIN is\nnot shown), help, help COMMAND, status, maintenance on|off, payments [N], pending, logout;\nadmins: config show|get|set|diff|apply|revert, confirm, credentials set, technician\nadd|remove|list; everyone: pin change.\nWrong PINs cost 1, 2, 4, 8 s, the fifth locks the line for 15 minutes (kept across\nrestarts). Every login attempt and command is in audit.log in the state directory.\nIdle logout after 5 minutes. status and maintenance need the daemon (its control socket:\n$KIOSKPAY_CONTROL_SOCKET, else $RUNTIME_DIRECTORY/control.sock, else\n/run/kioskpay/control.sock); payments and pending read the journal and do not."
    )]
    Console {
        /// Use this process's stdin and stdout (an SSH session, a script).
        #[arg(long, required_unless_present = "device", conflicts_with = "device")]
        stdio: bool,
        /// The serial device, e.g. /dev/serial0 or /dev/ttyAMA2.
        #[arg(long, value_name = "PATH")]
        device: Option<PathBuf>,
        /// The serial line's speed (8N1, no flow control).
        #[arg(long, default_value_t = 115200, value_name = "N", requires = "device")]
        baud: u32,
        /// The terminal's width: a typed line is kept to one row after the prompt, since a
        /// dumb terminal cannot move back up across a wrapped row (set it to the terminal
        /// emulator's width to type long paths).
        #[arg(long, default_value_t = 80, value_name = "N", value_parser = clap::value_parser!(u16).range(20..=500))]
        columns: u16,
        /// Answer every command with one JSON object per line (for scripts).
        #[arg(long)]
        json: bool,
        /// The daemon's config file (TOML): what `config` edits; its `state.dir` holds the
        /// journal and the audit log.
        #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_FILE)]
        config: PathBuf,
        /// The state directory (default: the config's, else /var/lib/kioskpay).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// The technicians file.
        #[arg(long, value_name = "PATH", default_value = crate::console::technicians::DEFAULT_FILE)]
        technicians: PathBuf,
        /// Idle logout after this many seconds (for tests; the default is the rule).
        #[arg(
            long,
            hide = true,
            env = "KIOSKPAY_CONSOLE_IDLE_S",
            default_value_t = 300
        )]
        idle_timeout_s: u64,
    },
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
        // Two dozen kiosks at info would bury the progress lines.
        #[cfg(feature = "emulator")]
        Command::Bench { .. } => "warn",
        // The console's terminal is often its stderr too: only what needs attention.
        // On a serial line the audit trail goes to the system journal too (see
        // console::session); with --stdio, stderr is the technician's own terminal.
        Command::Console { stdio: true, .. } => "warn",
        Command::Console { .. } => "warn,kioskpay::audit=info",
        _ => "info",
    };
    crate::logging::init_logging(cli.log.as_deref().unwrap_or(default_log));
    if matches!(cli.command, Command::Run { .. }) {
        // Before the runtime's threads exist, so that none of them gets an arena of its own.
        crate::allocator::limit_arenas();
    }
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

async fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run { config } => crate::daemon::run(config).await,
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
            signature_secret_file,
        } => {
            crate::commands::emulator::emulator(
                listen,
                time_scale,
                token_ttl,
                faults,
                signature_secret_file,
            )
            .await
        }
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
        #[cfg(feature = "emulator")]
        Command::Bench {
            payments,
            quick,
            json,
            daemon,
        } => {
            crate::bench::run(crate::bench::BenchOptions {
                payments: payments.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                quick,
                json,
                daemon,
            })
            .await
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
        Command::Console {
            stdio: _,
            device,
            baud,
            columns,
            json,
            config,
            state_dir,
            technicians,
            idle_timeout_s,
        } => {
            use crate::console::session::{ConsoleOptions, LineKind};
            let line = match device {
                Some(path) => LineKind::Device { path, baud },
                None => LineKind::Stdio,
            };
            crate::console::session::run(ConsoleOptions {
                line,
                columns: columns.into(),
                json,
                state_dir: console_state_dir(state_dir, &config)?,
                technicians,
                socket: crate::control::socket_path(),
                config,
                tools: Default::default(),
                idle_timeout: std::time::Duration::from_secs(idle_timeout_s),
            })
            .await
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

/// The console's state directory: `--state-dir`, else the config's `state.dir`, else the
/// default. The console must start on a kiosk whose config is missing or broken (repairing it is
/// what the technician came for), so the config is only asked for `state.dir`, leniently.
fn console_state_dir(
    state_dir: Option<PathBuf>,
    config: &std::path::Path,
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = state_dir {
        return Ok(dir);
    }
    let from_config = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| table.get("state")?.get("dir")?.as_str().map(PathBuf::from));
    Ok(from_config.unwrap_or_else(|| crate::config::StateConfig::default().dir))
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
