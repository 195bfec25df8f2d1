//! Waking the console: it stays silent until Enter is pressed three times within two seconds.
//!
//! A serial line carries more than a technician's keystrokes: the kernel's boot messages when the
//! UART is still its console, noise from a loose or unpowered cable, a scanner plugged into the
//! wrong port. None of that may start anything. So until woken the console answers nothing and
//! prints nothing (which also keeps a line looped back on itself quiet), and wakes only on three
//! Enter presses (CR, LF or CRLF) with no other byte between them and no more than two seconds
//! from the first to the third. Any other byte starts the count again.
//!
//! [`WakeDetector`] is pure: it is fed bytes with the time they arrived and does no I/O.

use std::time::{Duration, Instant};

/// Enter presses that wake the console.
pub const PRESSES: usize = 3;
/// Within this time from the first press to the last.
pub const WINDOW: Duration = Duration::from_secs(2);

/// Watches a dormant console line for the wake sequence.
#[derive(Debug, Default)]
pub struct WakeDetector {
    /// When each Enter of the current run was pressed, oldest first.
    presses: Vec<Instant>,
    /// The last byte was a CR: an LF right after it is the same Enter (CRLF).
    after_cr: bool,
}

impl WakeDetector {
    /// A detector that has seen nothing.
    pub fn new() -> WakeDetector {
        WakeDetector::default()
    }

    /// Feeds one byte received at `at`; true when it completes the wake sequence (the detector is
    /// then reset, ready for the next time the console goes dormant).
    pub fn feed(&mut self, byte: u8, at: Instant) -> bool {
        let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            b'\n' if after_cr => false,
            b'\r' | b'\n' => {
                self.presses
                    .retain(|&p| at.saturating_duration_since(p) <= WINDOW);
                self.presses.push(at);
                if self.presses.len() >= PRESSES {
                    self.reset();
                    return true;
                }
                false
            }
            _ => {
                self.presses.clear();
                false
            }
        }
    }

    /// Feeds bytes that arrived together at `at`; true when they complete the wake sequence.
    /// Bytes after the one that woke the console are ignored: they were typed before the prompt.
    pub fn feed_all(&mut self, bytes: &[u8], at: Instant) -> bool {
        bytes.iter().any(|&b| self.feed(b, at))
    }

    /// Forgets what was seen (the console went dormant again).
    pub fn reset(&mut self) {
        self.presses.clear();
        self.after_cr = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn three_enters_within_two_seconds_wake_it() {
        let t = Instant::now();
        let mut wake = WakeDetector::new();
        assert!(!wake.feed(b'\r', at(t, 0)));
        assert!(!wake.feed(b'\r', at(t, 700)));
        assert!(wake.feed(b'\r', at(t, 2000)));
        // Reset after waking: one more Enter does not wake it again.
        assert!(!wake.feed(b'\r', at(t, 2100)));
    }

    #[test]
    fn crlf_is_one_enter_and_lf_alone_is_one() {
        let t = Instant::now();
        let mut wake = WakeDetector::new();
        assert!(!wake.feed_all(b"\r\n\r\n", at(t, 0)));
        assert!(wake.feed_all(b"\r\n", at(t, 500)));
        let mut wake = WakeDetector::new();
        assert!(wake.feed_all(b"\n\n\n", at(t, 0)));
    }

    #[test]
    fn slow_enters_do_not_wake_it() {
        let t = Instant::now();
        let mut wake = WakeDetector::new();
        assert!(!wake.feed(b'\r', at(t, 0)));
        assert!(!wake.feed(b'\r', at(t, 1500)));
        assert!(!wake.feed(b'\r', at(t, 2001)));
        // The last two are within the window: a third one soon after wakes it.
        assert!(wake.feed(b'\r', at(t, 2500)));
    }

    #[test]
    fn kernel_messages_and_noise_never_wake_it() {
        let t = Instant::now();
        let mut wake = WakeDetector::new();
        let boot = b"[    0.000000] Booting Linux on physical CPU 0x0\r\n\
                     [    1.234567] usb 1-1: new high-speed USB device\r\n\
                     [    2.000000] EXT4-fs (mmcblk0p2): mounted\r\n";
        assert!(!wake.feed_all(boot, at(t, 0)));
        // Noise between Enters starts the count again.
        let mut wake = WakeDetector::new();
        assert!(!wake.feed_all(b"\r\x00\r\xff\r~\r", at(t, 100)));
        let mut wake = WakeDetector::new();
        assert!(!wake.feed_all(b"\r\r\x1b\r", at(t, 200)));
    }

    proptest! {
        /// Random bytes without two Enters in a row cannot wake it, however fast they come.
        #[test]
        fn noise_without_three_enters_in_a_row_never_wakes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let t = Instant::now();
            let mut wake = WakeDetector::new();
            let mut enters_in_a_row = 0;
            let mut after_cr = false;
            for (i, &b) in bytes.iter().enumerate() {
                let is_press = (b == b'\r' || b == b'\n') && !(b == b'\n' && after_cr);
                after_cr = b == b'\r';
                if b == b'\n' && !is_press {
                    // The LF of a CRLF: neither a press nor noise.
                } else if is_press {
                    enters_in_a_row += 1;
                } else {
                    enters_in_a_row = 0;
                }
                let woke = wake.feed(b, at(t, i as u64));
                prop_assert_eq!(woke, enters_in_a_row >= PRESSES);
                if woke {
                    enters_in_a_row = 0;
                }
            }
        }
    }
}
