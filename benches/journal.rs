//! What the crash-safe journal costs a kiosk: per payment, at start-up, and at compaction.
//!
//! ```sh
//! cargo bench --bench journal
//! ```
//!
//! Every record of a payment is `fdatasync`'d before the call it announces, so the storage's
//! sync latency is the journal's price, and it is paid on the payment's critical path. The first
//! table measures it on the file system of `target/` (an SD card on a Pi; here whatever the
//! build machine has), with the exact records an approved payment writes. The second measures
//! what a boot costs: `Journal::open` replays the whole file before the kiosk takes a cart, so
//! its time grows with the journal and compaction (`state.keep_final`) is what bounds it. The
//! third measures compaction itself.
//!
//! Big journals are built on `/dev/shm` (where a sync costs nothing) and copied to the measured
//! directory, so that building 50,000 payments does not take 350,000 real syncs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kioskpay::bench::approved_payment;
use kioskpay::journal::{self, Journal};

/// Payments written with a real sync each, for the latency table.
const SYNCED_PAYMENTS: u64 = 300;
/// Journal sizes (finished payments) for the replay table.
const REPLAY_SIZES: [u64; 4] = [1_000, 2_000, 10_000, 50_000];
/// Replays per size, to take the median.
const REPLAY_RUNS: usize = 5;
/// `state.keep_final`'s default.
const KEEP_FINAL: usize = 2_000;

fn fresh_dir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a bench directory");
    dir
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// Writes `payments` approved payments (and one unfinished) into `dir` on `/dev/shm`-speed
/// storage, then copies the file to `to`.
fn build_journal(shm: &Path, to: &Path, payments: u64) -> u64 {
    let scratch = fresh_dir(shm, "build");
    {
        let (mut journal, _) = Journal::open(&scratch).expect("open the scratch journal");
        for sequence in 1..=payments {
            for record in approved_payment(sequence) {
                journal.append(&record).expect("append");
            }
        }
        // One payment in flight at the power cut: replay must find it among the rest.
        journal
            .append(&approved_payment(payments + 1)[0])
            .expect("append the unfinished intent");
    }
    std::fs::copy(
        scratch.join(journal::FILE_NAME),
        to.join(journal::FILE_NAME),
    )
    .expect("copy the journal")
}

fn main() {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("journal-bench");
    let shm = Path::new("/dev/shm").join(format!("kioskpay-journal-bench-{}", std::process::id()));
    let shm = if std::fs::create_dir_all(&shm).is_ok() {
        shm
    } else {
        eprintln!("no /dev/shm here: building the big journals on the measured disk (slower)");
        base.join("scratch")
    };

    // 1. The critical path: one append + fdatasync per record.
    let dir = fresh_dir(&base, "synced");
    let (mut journal, _) = Journal::open(&dir).expect("open the journal");
    let mut latencies = Vec::new();
    let started = Instant::now();
    for sequence in 1..=SYNCED_PAYMENTS {
        for record in approved_payment(sequence) {
            let t = Instant::now();
            journal.append(&record).expect("append");
            latencies.push(t.elapsed());
        }
    }
    let total = started.elapsed();
    drop(journal);
    let bytes = std::fs::metadata(dir.join(journal::FILE_NAME)).map_or(0, |m| m.len());
    latencies.sort();
    let records_per_payment = approved_payment(1).len();
    let per_payment = total / SYNCED_PAYMENTS as u32;
    println!(
        "journal on {} (append + fdatasync per record)",
        base.display()
    );
    println!();
    println!("{:<42} {:>14}", "measure", "value");
    println!(
        "{:<42} {:>14}",
        "approved payments written", SYNCED_PAYMENTS
    );
    println!(
        "{:<42} {:>14}",
        "records (= fdatasyncs) per payment", records_per_payment
    );
    println!(
        "{:<42} {:>14}",
        "bytes per payment",
        bytes / SYNCED_PAYMENTS
    );
    println!(
        "{:<42} {:>14}",
        "append p50 (ms)",
        ms(percentile(&latencies, 0.5))
    );
    println!(
        "{:<42} {:>14}",
        "append p99 (ms)",
        ms(percentile(&latencies, 0.99))
    );
    println!(
        "{:<42} {:>14}",
        "append max (ms)",
        ms(*latencies.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "{:<42} {:>14}",
        "journal time per payment (ms)",
        ms(per_payment)
    );
    println!(
        "{:<42} {:>14.0}",
        "payments/s if the journal were all",
        SYNCED_PAYMENTS as f64 / total.as_secs_f64()
    );
    println!();

    // 2. Boot: replay of the whole file before the first cart.
    println!(
        "{:>10} {:>12} {:>16} {:>18} {:>16} {:>12}",
        "payments",
        "file (KiB)",
        "open+replay (ms)",
        "µs per payment",
        "read_only (ms)",
        "unresolved"
    );
    for &size in &REPLAY_SIZES {
        let dir = fresh_dir(&base, &format!("replay-{size}"));
        let file_bytes = build_journal(&shm, &dir, size);
        let mut opens = Vec::new();
        let mut reads = Vec::new();
        let mut unresolved = 0;
        for _ in 0..REPLAY_RUNS {
            let t = Instant::now();
            let (journal, replay) = Journal::open(&dir).expect("open");
            opens.push(t.elapsed());
            unresolved = replay.unresolved().count();
            drop(journal);
            let t = Instant::now();
            let replay = journal::read_only(&dir).expect("read");
            reads.push(t.elapsed());
            assert_eq!(replay.payments.len() as u64, size + 1);
        }
        opens.sort();
        reads.sort();
        let open = opens[REPLAY_RUNS / 2];
        println!(
            "{:>10} {:>12} {:>16} {:>18.2} {:>16} {:>12}",
            size,
            file_bytes / 1024,
            ms(open),
            open.as_secs_f64() * 1e6 / size as f64,
            ms(reads[REPLAY_RUNS / 2]),
            unresolved
        );
    }
    println!();

    // 3. Compaction down to keep_final, as the flow runs it at start and between payments.
    println!(
        "{:>10} {:>10} {:>14} {:>14} {:>10} {:>14}",
        "payments", "kept", "before (KiB)", "after (KiB)", "ratio", "compact (ms)"
    );
    for &size in &REPLAY_SIZES[1..] {
        let dir = fresh_dir(&base, &format!("compact-{size}"));
        build_journal(&shm, &dir, size);
        let (mut journal, _) = Journal::open(&dir).expect("open");
        let t = Instant::now();
        let stats = journal.compact(KEEP_FINAL).expect("compact");
        let took = t.elapsed();
        let (_, replay) = {
            drop(journal);
            Journal::open(&dir).expect("reopen")
        };
        assert_eq!(
            replay.unresolved().count(),
            1,
            "the unfinished payment survives"
        );
        println!(
            "{:>10} {:>10} {:>14} {:>14} {:>9.1}x {:>14}",
            size,
            stats.payments_kept,
            stats.bytes_before / 1024,
            stats.bytes_after / 1024,
            stats.bytes_before as f64 / stats.bytes_after.max(1) as f64,
            ms(took)
        );
    }
    let _ = std::fs::remove_dir_all(&shm);
    let _ = std::fs::remove_dir_all(&base);
}
