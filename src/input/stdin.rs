//! Standard input as a byte stream that never holds up shutdown.
//!
//! `tokio::io::stdin` reads on tokio's blocking pool, and a runtime being dropped waits for that
//! read to return: an idle interactive stdin would keep the daemon from exiting on SIGTERM.
//! Instead a detached OS thread reads stdin and writes what it gets into an in-memory pipe; when
//! the daemon stops, the thread is simply abandoned in its read.

use std::io::Read;

use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::runtime::Handle;

/// Bytes buffered between the stdin thread and the framer: a few lines' worth.
const PIPE_CAPACITY: usize = 4096;

/// Starts the stdin thread and returns the reading end of its pipe, which ends at stdin's EOF.
pub(crate) fn spawn() -> std::io::Result<DuplexStream> {
    let (reader, mut writer) = tokio::io::duplex(PIPE_CAPACITY);
    let handle = Handle::current();
    std::thread::Builder::new()
        .name("kioskpay-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 256];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading stdin failed; no more carts from stdin");
                        return;
                    }
                };
                // Fails only when the reader is gone, i.e. the input task has stopped.
                if handle.block_on(writer.write_all(&buf[..n])).is_err() {
                    return;
                }
            }
        })?;
    Ok(reader)
}
