//! `kioskpay bench --quick` as a user runs it: the table's rows and the JSON file. Never its
//! numbers: a benchmark's figures depend on the machine, so only the shape is checked.

use serde_json::Value;

use crate::support;

/// The figures every run has, by the start of their row.
const FIGURES: &[&str] = &[
    "display: countdown tick",
    "display: processing → approved",
    "outcome → screen, adaptive 250 ms (default)",
    "requests per payment, adaptive 250 ms (default)",
    "outcome → screen, fixed 500 ms",
    "outcome → screen, fixed 1 s",
    "outcome → screen, fixed 5 s",
    "outcome → screen, adaptive + callbacks",
    "outcome → screen, adaptive + callbacks lost",
    "scan → create: HTTP requests",
    "scan → create: kioskpay's own time",
    "warm path: new connections per create",
];

/// The figures of a `kioskpay run` child, whose `/proc` they read: where the bench runs
/// through the qemu runner (a cross build without binfmt_misc), it cannot start that child, and
/// says so in one row instead.
const CHILD_FIGURES: &[&str] = &[
    "memory after 0 payments",
    "memory after 300 payments",
    "memory growth, payments 100 → 300",
    "idle: CPU over",
    "idle: wake-ups over",
];

#[test]
fn a_quick_bench_prints_its_table_and_writes_the_same_rows_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out/bench.json");
    let Some(mut bench) = support::kioskpay_bin() else {
        return;
    };
    let out = bench
        .args(["bench", "--quick", "--json"])
        .arg(&json)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 1 is a figure missing its target: a finding, not a broken command.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("bench: "),
        "no progress on stderr: {stderr}"
    );
    assert!(
        stdout.contains("| figure") && stdout.contains("| verdict |"),
        "{stdout}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap())
        .expect("the JSON file parses");
    assert_eq!(report["quick"], true);
    let rows = report["rows"].as_array().expect("rows");
    let native = bench.get_program() == std::ffi::OsStr::new(env!("CARGO_BIN_EXE_kioskpay"));
    if !native {
        let row = rows
            .iter()
            .find(|r| r["figure"] == "memory and idle")
            .unwrap_or_else(|| panic!("no row saying memory was not measured in {report:#}"));
        assert_eq!(row["verdict"], "fail", "{row}");
    }
    // The quick mix has no slow payments: its request rate is shown against the limit, never
    // judged by it.
    for row in rows.iter().filter(|r| {
        r["figure"]
            .as_str()
            .is_some_and(|f| f.starts_with("requests per payment"))
    }) {
        assert_eq!(row["verdict"], "info", "{row}");
    }
    let child_figures = if native { CHILD_FIGURES } else { &[] };
    for figure in FIGURES.iter().chain(child_figures) {
        let row = rows
            .iter()
            .find(|r| r["figure"].as_str().is_some_and(|f| f.starts_with(figure)))
            .unwrap_or_else(|| panic!("no row {figure:?} in {report:#}"));
        for key in ["target", "measured"] {
            assert!(
                row[key].as_str().is_some_and(|v| !v.is_empty()),
                "{figure}: {key} empty in {row}"
            );
        }
        assert!(
            matches!(row["verdict"].as_str(), Some("pass" | "fail" | "info")),
            "{figure}: verdict {}",
            row["verdict"]
        );
        assert!(
            stdout.contains(figure),
            "{figure} not in the printed table:\n{stdout}"
        );
    }
}

#[test]
fn bench_help_has_an_example() {
    let Some(mut bench) = support::kioskpay_bin() else {
        return;
    };
    let out = bench
        .args(["bench", "--help"])
        .output()
        .expect("the binary runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("kioskpay bench --quick"), "{help}");
    assert!(
        help.contains("--payments") && help.contains("--json") && help.contains("--daemon"),
        "{help}"
    );
}
