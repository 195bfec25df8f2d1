//! The log lines a test's own thread writes, at the level a kiosk logs by default (INFO).
//!
//! One global subscriber for the whole test binary, writing into the capture of the thread that
//! logs (if it has one): tracing caches per call site whether any subscriber listens, and
//! thread-local subscribers (`set_default`) that come and go in parallel tests leave some call
//! sites quiet for the others. The tests that use this run their tasks on their own thread
//! (`#[tokio::test]`, current-thread runtime).

use std::cell::RefCell;
use std::sync::{Arc, Mutex, Once};

thread_local! {
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// What this thread logged since [`capture`].
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

/// Stops the capture when dropped.
pub struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

struct ToCapture;

impl std::io::Write for ToCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(captured) = c.borrow().as_ref() {
                captured.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures what this thread logs at INFO and above until the guard is dropped.
pub fn capture() -> (Captured, Guard) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(|| ToCapture)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in the tests");
    });
    let captured = Captured::default();
    CAPTURE.with(|c| *c.borrow_mut() = Some(captured.clone()));
    (captured, Guard)
}

impl Captured {
    /// The lines that contain `text`.
    pub fn lines(&self, text: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_string)
            .collect()
    }

    /// Everything, for an assertion's message.
    pub fn all(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
