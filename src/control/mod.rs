//! The control socket: how the technician console (and fleet scripts) talk to the running daemon.
//!
//! The daemon serves a Unix socket ([`socket_path`], by default `/run/kioskpay/control.sock` in
//! the unit's `RuntimeDirectory=`), mode 0660, and answers line-delimited JSON: one request
//! object per line, one reply object per line ([`protocol`]; documented for scripts in
//! `docs/control-protocol.md`). A connection that asks for events also gets one object per line
//! for each payment started or finished and each change of the kiosk's state.
//!
//! The control server is an observer like the display and the metrics: it reads the flow's
//! published [`crate::state::KioskState`] and its payment reports, and it may only *ask* the flow
//! through a [`crate::messages::Command`] (maintenance on or off, a technician's test payment,
//! which the flow takes only in maintenance and runs like any other). It never writes the
//! journal and never calls Dintero about a payment, so nothing typed at a console can drive
//! one; its only calls to Dintero are about the terminal itself ([`desk`]: status, sync, remote
//! operations), with the daemon's own client.
//!
//! Who may connect: the file mode keeps out everyone but the daemon's user and group; the server
//! also checks each peer's credentials (`SO_PEERCRED`) and accepts only root, the daemon's own
//! user and members of the socket's group, so a socket left with a wrong mode by hand still
//! refuses strangers.

pub mod client;
pub mod desk;
pub mod health;
pub mod maintenance;
pub mod protocol;
pub mod server;

use std::path::PathBuf;

/// Overrides where the socket is (tests, a second daemon on one machine).
pub const SOCKET_ENV: &str = "KIOSKPAY_CONTROL_SOCKET";
/// The socket's name in the runtime directory.
pub const SOCKET_NAME: &str = "control.sock";
/// Where the socket is when neither [`SOCKET_ENV`] nor systemd's `RUNTIME_DIRECTORY` says.
pub const DEFAULT_SOCKET: &str = "/run/kioskpay/control.sock";

/// The control socket's path: `$KIOSKPAY_CONTROL_SOCKET`, else `control.sock` in
/// `$RUNTIME_DIRECTORY` (set by systemd for `RuntimeDirectory=`; the first of several), else
/// [`DEFAULT_SOCKET`]. The daemon and the console read the same variables, so a console started
/// beside a daemon finds it.
pub fn socket_path() -> PathBuf {
    socket_path_from(
        std::env::var_os(SOCKET_ENV),
        std::env::var_os("RUNTIME_DIRECTORY"),
    )
}

fn socket_path_from(
    explicit: Option<std::ffi::OsString>,
    runtime: Option<std::ffi::OsString>,
) -> PathBuf {
    if let Some(path) = explicit.filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(dirs) = runtime.filter(|d| !d.is_empty()) {
        // systemd separates several runtime directories with colons.
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        if !first.is_empty() {
            return PathBuf::from(first).join(SOCKET_NAME);
        }
    }
    PathBuf::from(DEFAULT_SOCKET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_path_comes_from_the_variable_then_the_runtime_directory_then_the_default() {
        assert_eq!(
            socket_path_from(Some("/tmp/k.sock".into()), Some("/run/x".into())),
            PathBuf::from("/tmp/k.sock")
        );
        assert_eq!(
            socket_path_from(None, Some("/run/kioskpay:/run/other".into())),
            PathBuf::from("/run/kioskpay/control.sock")
        );
        assert_eq!(
            socket_path_from(Some("".into()), None),
            PathBuf::from(DEFAULT_SOCKET)
        );
    }
}
