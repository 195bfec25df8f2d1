//! The input unit as the payment flow sees it: bytes in, `InputEvent`s out.
//!
//! Framing and code parsing are driven through `tokio::io::duplex`, which behaves the same on
//! every target (including under qemu-user). The serial path is driven through real
//! pseudo-terminals; where the serial ioctls are not implemented (qemu-user) those tests say so on
//! stderr and skip.

use crate::support;

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use kioskpay::cart::{Cart, CartSource};
use kioskpay::config::{InputConfig, InputKind};
use kioskpay::input::codes::Format;
use kioskpay::input::scanner::{Framing, Terminator};
use kioskpay::input::serial::{self, FlowControl, LineSettings, Parity, SerialError};
use kioskpay::input::{read_carts, CustomerReason, InputEvent, ScanConfig};
use kioskpay::money::{Currency, Money};
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
// Framing

/// The development reader: plain codes, line framing on any terminator, no duplicate window.
fn plain(max_line: usize) -> ScanConfig {
    let mut config = ScanConfig::new(NOK, &[Format::Plain]);
    config.max_line = max_line;
    config
}

/// Feeds `chunks` through a small duplex pipe, each after its delay (on tokio's clock, so paused
/// time makes the pauses exact) and as its own write, runs `read_carts` to EOF and returns every
/// event sent.
async fn frame_timed(config: &ScanConfig, chunks: &[(u64, &[u8])]) -> Vec<InputEvent> {
    let (reader, mut writer) = tokio::io::duplex(8);
    let chunks: Vec<(u64, Vec<u8>)> = chunks.iter().map(|(d, c)| (*d, c.to_vec())).collect();
    let feeder = tokio::spawn(async move {
        for (delay_ms, chunk) in chunks {
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            writer.write_all(&chunk).await.unwrap();
            writer.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let (tx, mut rx) = mpsc::channel(1024);
    read_carts(reader, config, CartSource::Stdin, &tx)
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

async fn frame_with(config: &ScanConfig, chunks: &[&[u8]]) -> Vec<InputEvent> {
    let timed: Vec<(u64, &[u8])> = chunks.iter().map(|c| (0, *c)).collect();
    frame_timed(config, &timed).await
}

async fn frame(chunks: &[&[u8]], max_line: usize) -> Vec<InputEvent> {
    frame_with(&plain(max_line), chunks).await
}

/// The log reason of a refused code, checked to be one line without control characters.
fn refused(event: &InputEvent, customer: CustomerReason) -> &str {
    match event {
        InputEvent::Unreadable {
            reason,
            customer: c,
        } => {
            assert!(
                !reason.chars().any(char::is_control),
                "reason must have no control characters: {reason:?}"
            );
            assert_eq!(*c, customer, "{reason}");
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
    assert_eq!(whole[1], cart(100, Some("Bjørn")));
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
    let r = refused(&events[0], CustomerReason::Unreadable);
    assert!(r.contains("not valid UTF-8"), "{r}");
    let r = refused(&events[1], CustomerReason::Unreadable);
    assert!(r.contains("not valid UTF-8"), "{r}");
    let r = refused(&events[2], CustomerReason::Unreadable);
    assert!(
        r.contains("\\u{7f}") && r.contains("control characters"),
        "{r}"
    );
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
    assert!(refused(&events[0], CustomerReason::InvalidAmount).contains("zero"));
    assert!(refused(&events[1], CustomerReason::InvalidAmount).contains("decimals"));
    assert!(refused(&events[2], CustomerReason::Unreadable).contains("plain code"));
    assert!(refused(&events[3], CustomerReason::Unreadable).contains("\"-1.00\""));
    assert_eq!(events[4], cart(39900, Some("A1")));
}

fn with(framing: Framing, terminator: Terminator) -> ScanConfig {
    let mut config = plain(512);
    config.framing = framing;
    config.terminator = terminator;
    config
}

#[tokio::test]
async fn a_single_terminator_leaves_the_other_bytes_in_the_code() {
    let cr = with(Framing::Line, Terminator::Cr);
    let events = frame_with(&cr, &[b"1.00\r2.00\n3.00\r"]).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], cart(100, None));
    refused(&events[1], CustomerReason::Unreadable);

    let crlf = with(Framing::Line, Terminator::Crlf);
    assert_eq!(
        frame_with(&crlf, &[b"1.00\r\n2.00\n", b"3.00\r", b"\n"]).await,
        vec![cart(100, None), cart(200, None), cart(300, None)]
    );
    let events = frame_with(&crlf, &[b"1.00\r2.00\r\n"]).await;
    assert_eq!(events.len(), 1);
    refused(&events[0], CustomerReason::Unreadable);

    let lf = with(Framing::Line, Terminator::Lf);
    assert_eq!(
        frame_with(&lf, &[b"1.00\n2.00\n"]).await,
        vec![cart(100, None), cart(200, None)]
    );

    let tab = with(Framing::Line, Terminator::Tab);
    let events = frame_with(&tab, &[b"1.00\t2.00\t3.00\n\t"]).await;
    assert_eq!(&events[..2], &[cart(100, None), cart(200, None)]);
    refused(&events[2], CustomerReason::Unreadable);
}

#[tokio::test]
async fn a_gs1_slip_ended_by_tab_is_a_cart_with_its_reference() {
    let mut config = ScanConfig::new(NOK, &[Format::Gs1]);
    config.terminator = Terminator::Tab;
    let events = frame_with(
        &config,
        &[b"]C14157080003824349", b"8020KID-77\x1d3902000", b"12550\t"],
    )
    .await;
    // A slip is for one cart: the flow refuses it once paid (see tests/inprocess/flow.rs).
    let slip = InputEvent::SlipCart(Cart {
        amount: Money::new(12550, NOK),
        reference: Some("KID-77".into()),
        source: CartSource::Stdin,
    });
    assert_eq!(events, vec![slip]);
    // The same scan where plain is the only format: refused, never charged.
    let events = frame_with(
        &plain(512),
        &[b"]C141570800038243498020KID-77\x1d390200012550\n"],
    )
    .await;
    refused(&events[0], CustomerReason::NotAccepted);
}

#[tokio::test]
async fn stx_etx_frames_are_codes_and_everything_else_is_noise() {
    let config = with(Framing::StxEtx, Terminator::Any);
    assert_eq!(
        frame_with(
            &config,
            &[
                b"\x021.00\x03\r\n",
                // Noise (and a stray ETX) between frames is dropped.
                b"garbage\x03\x022.",
                b"00\x03",
                // An STX inside a frame starts over: the first half is dropped.
                b"\x023.0\x024.00\x03",
                // A terminator inside a frame is data: this code is refused, not split.
                b"\x025.00\r\n6.00\x03",
                // Unclosed at the end of input: dropped.
                b"\x027.00",
            ]
        )
        .await
        .iter()
        .map(|e| match e {
            InputEvent::Cart(c) => c.amount.minor,
            _ => 0,
        })
        .collect::<Vec<_>>(),
        vec![100, 200, 400, 0]
    );
    // An over-long frame is dropped and the next frame is read.
    let mut input = vec![0x02];
    input.extend_from_slice(&[b'9'; 600]);
    input.extend_from_slice(b"\x03\x021.00;A\x03");
    assert_eq!(
        frame_with(&config, &[&input]).await,
        vec![cart(100, Some("A"))]
    );
}

#[tokio::test(start_paused = true)]
async fn with_gap_framing_a_pause_ends_a_code() {
    let config = with(Framing::Gap, Terminator::Any);
    assert_eq!(config.gap, Duration::from_millis(50));
    let events = frame_timed(
        &config,
        &[
            // Bytes 10 ms apart belong to one code.
            (0, b"1."),
            (10, b"00"),
            // 100 ms of silence ended it; this is the next code.
            (100, b"2.00"),
            // A terminator still ends a code at once.
            (100, b"3.00\r\n4.00"),
        ],
    )
    .await;
    assert_eq!(
        events,
        vec![
            cart(100, None),
            cart(200, None),
            cart(300, None),
            cart(400, None)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_code_repeated_within_the_window_counts_once() {
    let mut config = plain(512);
    config.duplicate_window = Duration::from_millis(1000);
    let events = frame_timed(
        &config,
        &[
            (0, b"1.00\n"),
            // Repeats while the code lies under the scanner: each restarts the window.
            (500, b"1.00\n"),
            (700, b"1.00\n"),
            // More than a second after the last reading: a new scan.
            (1100, b"1.00\n"),
            // Another code in between makes the next reading new as well.
            (100, b"2.00\n"),
            (100, b"1.00\n"),
            // Refused codes count once too: the customer sees one refusal.
            (100, b"abc\nabc\n"),
        ],
    )
    .await;
    assert_eq!(
        &events[..4],
        &[
            cart(100, None),
            cart(100, None),
            cart(200, None),
            cart(100, None)
        ]
    );
    assert_eq!(events.len(), 5, "{events:?}");
    refused(&events[4], CustomerReason::Unreadable);
    // Without a window every reading counts.
    assert_eq!(frame(&[b"1.00\n1.00\n"], 512).await.len(), 2);
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
    let err = read_carts(reader, &plain(512), CartSource::Stdin, &tx)
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
        read_carts(reader, &plain(512), CartSource::Stdin, &tx),
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
    if !support::serial_supported() {
        return;
    }
    let mut pty = open_pty();
    let port = serial::open(&pty.path, &LineSettings::new(9600)).unwrap();

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
    assert_eq!(
        termios.c_iflag & (libc::INPCK | libc::IXON | libc::IXOFF),
        0,
        "no parity, no XON/XOFF"
    );

    match serial::open(&pty.path, &LineSettings::new(9600)) {
        Err(SerialError::Busy { .. }) => {}
        other => panic!("a second open must be refused as busy, got {other:?}"),
    }

    let (tx, mut rx) = mpsc::channel(8);
    let reader =
        tokio::spawn(async move { read_carts(port, &plain(512), CartSource::Serial, &tx).await });
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

/// The termios of the slave side of `pty`, as the scanner's line is set up.
fn termios(pty: &Pty) -> libc::termios2 {
    // SAFETY: a zeroed termios2 is a valid out-buffer for TCGETS2 on an open tty fd.
    unsafe {
        let mut t: libc::termios2 = std::mem::zeroed();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&pty.master);
        assert_eq!(libc::ioctl(fd, libc::TCGETS2, &mut t), 0);
        t
    }
}

#[tokio::test]
async fn parity_and_flow_control_from_the_config_reach_the_line() {
    let _guard = PTYS.lock().await;
    if !support::serial_supported() {
        return;
    }
    let input: InputConfig = toml::from_str(
        "baud = 115200\nparity = \"even\"\nflow_control = \"hardware\"\nterminator = \"tab\"\nformats = [\"plain\"]\n",
    )
    .unwrap();
    let mut pty = open_pty();
    let port = serial::open(&pty.path, &LineSettings::from_config(&input)).unwrap();
    let t = termios(&pty);
    assert_eq!((t.c_ispeed, t.c_ospeed), (115200, 115200));
    // Linux's pty driver clears PARENB whatever is asked (a pty has no wire to add a parity
    // bit to); parity checking on input (INPCK) and the parity sense (PARODD) stay as set.
    assert_eq!(t.c_iflag & libc::INPCK, libc::INPCK, "parity checked");
    assert_eq!(t.c_cflag & libc::PARODD, 0, "even parity");
    assert_eq!(t.c_cflag & libc::CRTSCTS, libc::CRTSCTS);
    assert_eq!(t.c_iflag & (libc::IXON | libc::IXOFF), 0);
    assert_eq!(t.c_cflag & libc::CSIZE, libc::CS8);

    // The rest of [input] frames what comes down that line: TAB-terminated codes.
    let (tx, mut rx) = mpsc::channel(8);
    let scan = ScanConfig::from_config(&input, NOK);
    let reader =
        tokio::spawn(async move { read_carts(port, &scan, CartSource::Serial, &tx).await });
    pty.master.write_all(b"12.50;T1\t").unwrap();
    assert_eq!(next_event(&mut rx).await, serial_cart(1250, Some("T1")));
    drop(pty.master);
    tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("hang guard")
        .unwrap()
        .unwrap();

    let odd_software = LineSettings {
        baud: 9600,
        parity: Parity::Odd,
        flow_control: FlowControl::Software,
    };
    let pty = open_pty();
    let _port = serial::open(&pty.path, &odd_software).unwrap();
    let t = termios(&pty);
    assert_eq!(t.c_iflag & libc::INPCK, libc::INPCK, "parity checked");
    assert_eq!(t.c_cflag & libc::PARODD, libc::PARODD, "odd parity");
    assert_eq!(t.c_cflag & libc::CRTSCTS, 0);
    assert_eq!(
        t.c_iflag & (libc::IXON | libc::IXOFF),
        libc::IXON | libc::IXOFF
    );
}

fn point(link: &Path, target: &Path) {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[tokio::test]
async fn unplugged_scanner_is_reported_and_picked_up_again() {
    let _guard = PTYS.lock().await;
    if !support::serial_supported() {
        return;
    }
    // input.device is a udev-style symlink; the pty behind it is the "USB scanner".
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("scanner");
    let (tx, mut rx) = mpsc::channel(8);
    let task_link = link.clone();
    let task = tokio::spawn(async move {
        let line = LineSettings::new(9600);
        serial::run(
            &task_link,
            &line,
            &plain(512),
            &tx,
            Duration::from_millis(20),
        )
        .await
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

#[tokio::test(start_paused = true)]
async fn a_flood_of_garbage_is_logged_a_few_times_and_summed_up() {
    let (log, _guard) = support::log::capture();
    // 3 KB of garbage in short lines, each different (the duplicate window would hide repeats).
    let garbage: Vec<u8> = (0..300u32)
        .flat_map(|i| format!("#{i:04}?\n").into_bytes())
        .collect();
    let (reader, mut writer) = tokio::io::duplex(64);
    let (tx, mut rx) = mpsc::channel(1024);
    let config = plain(512);
    let reading = async { read_carts(reader, &config, CartSource::Stdin, &tx).await };
    let feeding = async {
        writer.write_all(&garbage).await.unwrap();
        // The summary comes when the minute is over, even while the scanner stays quiet.
        tokio::time::sleep(Duration::from_secs(61)).await;
        let summary = log.lines("more refused scans in the last minute");
        assert_eq!(summary.len(), 1, "{}", log.all());
        assert!(summary[0].contains("295 more refused scans"), "{summary:?}");
        writer.write_all(b"#late?\n").await.unwrap();
        drop(writer);
    };
    let (read, ()) = tokio::join!(reading, feeding);
    read.unwrap();
    drop(tx);
    let mut refused = 0;
    while let Some(event) = rx.recv().await {
        assert!(matches!(event, InputEvent::Unreadable { .. }), "{event:?}");
        refused += 1;
    }
    assert_eq!(refused, 301, "every scan still reaches the flow");
    let warnings = log.lines("WARN");
    assert_eq!(warnings.len(), 5 + 1 + 1, "{}", log.all());
    let refused = log.lines("code refused");
    assert_eq!(refused.len(), 6, "{}", log.all());
    assert!(refused[0].contains("customer=unreadable"), "{refused:?}");
}
