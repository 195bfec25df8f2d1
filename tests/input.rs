//! The input unit as the payment flow sees it: bytes in, `InputEvent`s out.
//!
//! Framing and code parsing are driven through `tokio::io::duplex`, which behaves the same on
//! every target (including under qemu-user). The serial path is driven through real
//! pseudo-terminals; where the serial ioctls are not implemented (qemu-user) those tests say so on
//! stderr and skip.

mod support;

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use kioskpay::cart::{Cart, CartSource};
use kioskpay::config::{InputConfig, InputKind};
use kioskpay::input::serial::{self, SerialError};
use kioskpay::input::{parse_line, read_carts, CodeError, InputEvent};
use kioskpay::money::{AmountError, Currency, Money};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

const NOK: Currency = Currency::NOK;

fn cart(minor: u64, reference: Option<&str>) -> InputEvent {
    InputEvent::Cart(Cart {
        amount: Money::new(minor, NOK),
        reference: reference.map(str::to_string),
        source: CartSource::Stdin,
    })
}

// ---------------------------------------------------------------------------------------------
// parse_line

#[test]
fn parse_line_accepts_amounts_and_references() {
    let ok = |line: &str| parse_line(line, NOK, CartSource::Serial).unwrap();
    let c = ok("399.00;KID12345");
    assert_eq!(c.amount, Money::new(39900, NOK));
    assert_eq!(c.reference.as_deref(), Some("KID12345"));
    assert_eq!(c.source, CartSource::Serial);

    for (line, minor, reference) in [
        ("399.00", 39900, None),
        ("0.01", 1, None),
        ("399", 39900, None),
        ("399,50", 39950, None),
        ("  399.00  ;  A-1_b.c/d:e  ", 39900, Some("A-1_b.c/d:e")),
        ("399.00;", 39900, None),
        ("399.00;   ", 39900, None),
        ("184467440737095516.15", u64::MAX, None),
    ] {
        let c = ok(line);
        assert_eq!(c.amount.minor, minor, "{line:?}");
        assert_eq!(c.reference.as_deref(), reference, "{line:?}");
    }
    let longest = format!("1.00;{}", "R".repeat(64));
    assert_eq!(ok(&longest).reference.map(|r| r.len()), Some(64));
}

#[test]
fn parse_line_refuses_what_is_not_exactly_one_positive_amount() {
    let err = |line: &str| parse_line(line, NOK, CartSource::Serial).unwrap_err();
    assert_eq!(err(""), CodeError::Empty);
    assert_eq!(err("   "), CodeError::Empty);
    assert!(matches!(err("0.00"), CodeError::Zero { .. }));
    assert!(matches!(err("0"), CodeError::Zero { .. }));
    for bad in [
        "-1.00", "12a", "1e3", "+5", "1 000", "1.", ".5", "1.2.3", "0x10",
    ] {
        assert!(
            matches!(err(bad), CodeError::Amount(AmountError::Malformed(_))),
            "{bad:?}: {:?}",
            err(bad)
        );
    }
    assert!(matches!(
        err("1.001"),
        CodeError::Amount(AmountError::TooPrecise { exponent: 2, .. })
    ));
    assert!(matches!(
        err("99999999999999999999"),
        CodeError::Amount(AmountError::Overflow(_))
    ));
    assert!(matches!(
        err(&"9".repeat(1000)),
        CodeError::AmountTooLong { len: 1000, .. }
    ));
    assert!(matches!(err(";ref"), CodeError::MissingAmount { .. }));
    assert!(matches!(err(" ;ref"), CodeError::MissingAmount { .. }));
    assert!(matches!(
        err(&format!("1.00;{}", "R".repeat(65))),
        CodeError::ReferenceTooLong { len: 65, .. }
    ));
    for (line, position) in [
        ("1.00;KID 123", 4),
        ("1.00;a;b", 2),
        ("1.00;Bjørn", 3),
        ("1.00;a\u{7f}", 2),
        ("1.00;\"x", 1),
    ] {
        match err(line) {
            CodeError::ReferenceChar { position: p, .. } => assert_eq!(p, position, "{line:?}"),
            other => panic!("{line:?}: {other:?}"),
        }
    }
}

#[test]
fn parse_line_errors_are_precise_and_plain_ascii() {
    let message = |line: &str| {
        parse_line(line, NOK, CartSource::Serial)
            .unwrap_err()
            .to_string()
    };
    assert!(message("0.00").contains("smallest cart is 0.01"));
    assert!(message("1.001").contains("more than 2 decimals"));
    assert!(message(";X").contains("no amount before ';'"));
    let m = message("1.00;Bjørn");
    assert!(
        m.contains(r#"reference "Bj\xc3\xb8rn" has "\xc3\xb8" at position 3"#),
        "{m}"
    );
    assert!(m.is_ascii(), "{m}");
    let m = message(&format!("1.00;{}", "R".repeat(500)));
    assert!(m.len() < 200, "message should quote an excerpt only: {m}");
    assert!(m.contains("500 characters long"), "{m}");
    let m = message(&"9".repeat(10_000));
    assert!(m.len() < 200 && m.contains("10000 characters"), "{m}");
}

// ---------------------------------------------------------------------------------------------
// Framing

/// Feeds `chunks` through a small duplex pipe (each chunk its own write, so reads see the same
/// boundaries), runs `read_carts` to EOF and returns every event sent.
async fn frame(chunks: &[&[u8]], max_line: usize) -> Vec<InputEvent> {
    let (reader, mut writer) = tokio::io::duplex(8);
    let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
    let feeder = tokio::spawn(async move {
        for chunk in chunks {
            writer.write_all(&chunk).await.unwrap();
            writer.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let (tx, mut rx) = mpsc::channel(1024);
    read_carts(reader, NOK, CartSource::Stdin, max_line, &tx)
        .await
        .unwrap();
    feeder.await.unwrap();
    drop(tx);
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    events
}

fn assert_clean_reason(event: &InputEvent) -> &str {
    match event {
        InputEvent::Unreadable { reason } => {
            assert!(
                reason.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "reason must be printable ASCII: {reason:?}"
            );
            reason
        }
        other => panic!("expected Unreadable, got {other:?}"),
    }
}

#[tokio::test]
async fn every_terminator_ends_a_line() {
    for term in ["\r", "\n", "\r\n", "\t"] {
        let input = format!("399.00;A1{term}12.50{term}");
        assert_eq!(
            frame(&[input.as_bytes()], 512).await,
            vec![cart(39900, Some("A1")), cart(1250, None)],
            "terminator {term:?}"
        );
    }
    // Mixed in one stream, as a scanner reconfigured mid-day would send.
    assert_eq!(
        frame(&[b"1.00\r2.00\n3.00\r\n4.00\t"], 512).await,
        vec![
            cart(100, None),
            cart(200, None),
            cart(300, None),
            cart(400, None)
        ]
    );
}

#[tokio::test]
async fn lines_split_across_writes_at_every_byte_boundary() {
    let input = "399.00;A1\r\n1.00;Bjørn\r\n12.50\n".as_bytes();
    let whole = frame(&[input], 512).await;
    assert_eq!(whole.len(), 3);
    assert_eq!(whole[0], cart(39900, Some("A1")));
    // The UTF-8 'ø' is judged as a character, not as broken bytes.
    assert!(assert_clean_reason(&whole[1]).contains("position 3"));
    assert_eq!(whole[2], cart(1250, None));
    for split in 1..input.len() {
        let (a, b) = input.split_at(split);
        assert_eq!(frame(&[a, b], 512).await, whole, "split at byte {split}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(frame(&bytes, 512).await, whole, "one byte per write");
}

#[tokio::test]
async fn over_long_line_is_dropped_and_the_next_line_is_read() {
    let mut input = vec![b'7'; 100];
    input.extend_from_slice(b"\r\n399.00;A1\r\n");
    assert_eq!(frame(&[&input], 16).await, vec![cart(39900, Some("A1"))]);
    // Exactly max_line bytes is still a line.
    let exact = b"399.00;ABCDEFGHI\n";
    assert_eq!(exact.len() - 1, 16);
    assert_eq!(
        frame(&[exact], 16).await,
        vec![cart(39900, Some("ABCDEFGHI"))]
    );
    // A megabyte of noise without a terminator, written in pieces: nothing but the good line
    // after it comes out, and an over-long tail at EOF is dropped too.
    let noise = vec![b'x'; 64 * 1024];
    let mut chunks: Vec<&[u8]> = vec![&noise; 16];
    chunks.push(b"\n1.00\n");
    chunks.push(&noise);
    assert_eq!(frame(&chunks, 512).await, vec![cart(100, None)]);
}

#[tokio::test]
async fn binary_noise_is_unreadable_not_a_panic() {
    let events = frame(
        &[
            b"\x00\xff\x1b[2J\n",
            b"\xff\xfe399.00\n",
            b"399.00\x7f\n",
            b"1.00\n",
        ],
        512,
    )
    .await;
    assert_eq!(events.len(), 4, "{events:?}");
    let r = assert_clean_reason(&events[0]);
    assert!(r.contains("control byte 0x00 at position 1"), "{r}");
    assert!(r.contains(r#""\x00\xff\x1b[2J""#), "{r}");
    let r = assert_clean_reason(&events[1]);
    assert!(r.contains("not UTF-8 at byte 1"), "{r}");
    let r = assert_clean_reason(&events[2]);
    assert!(r.contains("control byte 0x7f at position 7"), "{r}");
    assert_eq!(events[3], cart(100, None));
}

#[tokio::test]
async fn blank_lines_are_ignored() {
    assert_eq!(
        frame(&[b"\n\r\n\r\r\n   \n\t\t399.00\n\n\n", b"   \r\n"], 512).await,
        vec![cart(39900, None)]
    );
    assert_eq!(frame(&[b""], 512).await, vec![]);
}

#[tokio::test]
async fn last_line_without_terminator_is_read_at_eof() {
    assert_eq!(
        frame(&[b"1.00\n399.00;A1"], 512).await,
        vec![cart(100, None), cart(39900, Some("A1"))]
    );
}

#[tokio::test]
async fn bad_codes_become_unreadable_with_the_parse_error() {
    let events = frame(&[b"0.00\n1.001\n;KID\n-1.00\n399.00;A1\n"], 512).await;
    assert_eq!(events.len(), 5);
    assert!(assert_clean_reason(&events[0]).contains("zero"));
    assert!(assert_clean_reason(&events[1]).contains("decimals"));
    assert!(assert_clean_reason(&events[2]).contains("no amount"));
    assert!(assert_clean_reason(&events[3]).contains("\"-1.00\" is not an amount"));
    assert_eq!(events[4], cart(39900, Some("A1")));
}

/// Yields `data`, then fails like an unplugged USB device.
struct FailingReader {
    data: Option<&'static [u8]>,
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.data.take() {
            Some(data) => {
                buf.put_slice(data);
                Poll::Ready(Ok(()))
            }
            None => Poll::Ready(Err(std::io::Error::from_raw_os_error(libc::EIO))),
        }
    }
}

#[tokio::test]
async fn read_error_is_returned_and_the_cut_line_is_not_charged() {
    let (tx, mut rx) = mpsc::channel(8);
    let reader = FailingReader {
        data: Some(b"1.00\n39"),
    };
    let err = read_carts(reader, NOK, CartSource::Stdin, 512, &tx)
        .await
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    drop(tx);
    assert_eq!(rx.recv().await, Some(cart(100, None)));
    assert_eq!(
        rx.recv().await,
        None,
        "the truncated \"39\" must not become a cart"
    );
}

#[tokio::test]
async fn reading_stops_when_the_flow_is_gone() {
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    // The writer stays open: only the closed receiver can end this.
    let (reader, mut writer) = tokio::io::duplex(64);
    writer.write_all(b"1.00\n").await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        read_carts(reader, NOK, CartSource::Stdin, 512, &tx),
    )
    .await
    .expect("hang guard");
    assert!(result.is_ok());
}

// ---------------------------------------------------------------------------------------------
// The serial device, through real pseudo-terminals

/// ptys are a shared kernel namespace: a test that closes one frees its number for another, so
/// the pty tests in this file run one at a time.
static PTYS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The master side of a pty (what the "scanner" writes to) and the slave's path.
struct Pty {
    master: File,
    path: PathBuf,
}

fn open_pty() -> Pty {
    let mut master = -1;
    let mut slave = -1;
    // SAFETY: two out-pointers to valid ints; name, termios and winsize may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fresh fds that nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let path = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&slave)
    ))
    .expect("slave pty path");
    // The slave is reopened by path, like the scanner's device node; this fd is not needed.
    drop(slave);
    Pty {
        master: File::from(master),
        path,
    }
}

/// Whether serial ports can be configured here; prints why not when they cannot.
fn serial_supported(test: &str) -> bool {
    let pty = open_pty();
    match serial::open(&pty.path, 9600) {
        Ok(_) => true,
        Err(e @ SerialError::Unsupported { .. }) => {
            support::skipped(&format!(
                "{test}: serial ports cannot be configured on this system (ENOSYS, e.g. a \
                 qemu-user build without TCGETS2 emulation): {e}"
            ));
            false
        }
        Err(e) => panic!("opening a pty as a serial port failed: {e}"),
    }
}

async fn next_event(rx: &mut mpsc::Receiver<InputEvent>) -> InputEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("hang guard: no event within 10 s")
        .expect("the input task ended")
}

fn serial_cart(minor: u64, reference: Option<&str>) -> InputEvent {
    InputEvent::Cart(Cart {
        amount: Money::new(minor, NOK),
        reference: reference.map(str::to_string),
        source: CartSource::Serial,
    })
}

#[tokio::test]
async fn pty_is_opened_9600_8n1_raw_exclusive_and_delivers_carts() {
    let _guard = PTYS.lock().await;
    if !serial_supported("pty_is_opened_9600_8n1_raw_exclusive_and_delivers_carts") {
        return;
    }
    let mut pty = open_pty();
    let port = serial::open(&pty.path, 9600).unwrap();

    // On Linux the master reports the slave's termios: what the scanner's line is set to.
    // The port is set through termios2 (any baud rate), so read it back the same way.
    // SAFETY: a zeroed termios2 is a valid out-buffer for TCGETS2 on an open tty fd.
    let termios = unsafe {
        let mut t: libc::termios2 = std::mem::zeroed();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&pty.master);
        assert_eq!(libc::ioctl(fd, libc::TCGETS2, &mut t), 0);
        t
    };
    assert_eq!((termios.c_ispeed, termios.c_ospeed), (9600, 9600));
    assert_eq!(termios.c_cflag & libc::CSIZE, libc::CS8);
    assert_eq!(
        termios.c_cflag & (libc::PARENB | libc::CSTOPB | libc::CRTSCTS),
        0
    );
    assert_eq!(termios.c_lflag & (libc::ICANON | libc::ECHO), 0, "raw mode");

    match serial::open(&pty.path, 9600) {
        Err(SerialError::Busy { .. }) => {}
        other => panic!("a second open must be refused as busy, got {other:?}"),
    }

    let (tx, mut rx) = mpsc::channel(8);
    let reader =
        tokio::spawn(async move { read_carts(port, NOK, CartSource::Serial, 512, &tx).await });
    pty.master.write_all(b"399.00;A1\r\n").unwrap();
    assert_eq!(next_event(&mut rx).await, serial_cart(39900, Some("A1")));

    // Unplug: the line hangs up. Linux reports a hung-up tty as end of input (which is why the
    // serial runner treats EOF as a lost scanner); the reader must return, not wait forever.
    drop(pty.master);
    tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("hang guard: the reader must notice the hangup")
        .unwrap()
        .unwrap();
}

fn point(link: &Path, target: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[tokio::test]
async fn unplugged_scanner_is_reported_and_picked_up_again() {
    let _guard = PTYS.lock().await;
    if !serial_supported("unplugged_scanner_is_reported_and_picked_up_again") {
        return;
    }
    // input.device is a udev-style symlink; the pty behind it is the "USB scanner".
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("scanner");
    let (tx, mut rx) = mpsc::channel(8);
    let task_link = link.clone();
    let task = tokio::spawn(async move {
        serial::run(&task_link, 9600, 512, NOK, &tx, Duration::from_millis(20)).await
    });

    // Not plugged in at start.
    assert_eq!(next_event(&mut rx).await, InputEvent::ScannerUnavailable);

    let mut first = open_pty();
    point(&link, &first.path);
    assert_eq!(next_event(&mut rx).await, InputEvent::ScannerBack);
    first.master.write_all(b"399.00;A1\r\n").unwrap();
    assert_eq!(next_event(&mut rx).await, serial_cart(39900, Some("A1")));

    // Unplug: udev removes the link and the line hangs up.
    std::fs::remove_file(&link).unwrap();
    drop(first.master);
    assert_eq!(next_event(&mut rx).await, InputEvent::ScannerUnavailable);

    // Plugged back in, possibly under another tty number.
    let mut second = open_pty();
    point(&link, &second.path);
    assert_eq!(next_event(&mut rx).await, InputEvent::ScannerBack);
    second.master.write_all(b"12.50\n").unwrap();
    assert_eq!(next_event(&mut rx).await, serial_cart(1250, None));

    task.abort();
}

// ---------------------------------------------------------------------------------------------
// input::run

#[tokio::test(start_paused = true)]
async fn missing_scanner_is_reported_once_and_run_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = InputConfig {
        kind: InputKind::Serial,
        device: dir.path().join("no-such-scanner"),
        ..InputConfig::default()
    };
    let (tx, mut rx) = mpsc::channel(8);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(kioskpay::input::run(config, NOK, tx, async {
        let _ = stopped.await;
    }));
    assert_eq!(next_event(&mut rx).await, InputEvent::ScannerUnavailable);
    // Ten more reopen attempts fail the same way: the flow is not told again.
    tokio::time::sleep(serial::REOPEN_INTERVAL * 10).await;
    assert!(
        rx.try_recv().is_err(),
        "ScannerUnavailable must be sent once"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("hang guard: run must return on shutdown")
        .unwrap();
    assert_eq!(rx.recv().await, None, "run dropped its sender");
}
