//! Secret files: the Dintero client secret, the callback signature secret and the key shared
//! with the POS for signed codes.
//!
//! The config file itself may be world-readable and pasted into a support ticket; the secrets
//! live in files of their own that only the service user (or root) can read, reached through
//! directories nobody else can write. Each check is made on the handle the secret is then read
//! from, so the file judged is the file read.

use std::path::Path;

use super::ConfigError;
use crate::input::codes::signed;
use crate::input::InputConfig;
use crate::secret::Secret;

impl InputConfig {
    /// Reads `signing_key_file` into `signing_key`, refusing a file other users could read or a
    /// key shorter than [`signed::MIN_KEY_LEN`] bytes. Does nothing without the key.
    pub fn load_signing_key(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.signing_key_file else {
            return Ok(());
        };
        let err = |problem: String| ConfigError::SigningKey {
            path: path.clone(),
            problem,
        };
        let key = read_private(path, "the key shared with the POS").map_err(err)?;
        if key.expose().len() < signed::MIN_KEY_LEN {
            return Err(err(format!(
                "the key is {} bytes; use at least {} random bytes, e.g. \
                 openssl rand -base64 32 > {}",
                key.expose().len(),
                signed::MIN_KEY_LEN,
                path.display()
            )));
        }
        self.signing_key = Some(key);
        Ok(())
    }
}

/// Reads the client secret, refusing a file that other users could read.
pub(super) fn read_secret(path: &Path) -> Result<Secret, ConfigError> {
    read_private(path, "the API client's secret").map_err(|problem| ConfigError::Secret {
        path: path.to_path_buf(),
        problem,
    })
}

/// Reads the account's callback signature secret, with the same rules as the client secret.
pub(super) fn read_callback_secret(path: &Path) -> Result<Secret, ConfigError> {
    read_private(path, "the account's callback signature secret").map_err(|problem| {
        ConfigError::CallbackSecret {
            path: path.to_path_buf(),
            problem,
        }
    })
}

/// Reads a secret file (`what` names its content in the advice), refusing one that other users
/// could read or that is empty; the error says what is wrong and how to fix it.
fn read_private(path: &Path, what: &str) -> Result<Secret, String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::fs::PermissionsExt;
    // Checked and read through one handle: the file judged is the file read.
    let mut file = std::fs::File::open(path)
        .map_err(|e| format!("{e}; create it with {what} and chmod 600"))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:03o} lets other users read the secret; run: chmod 600 {}",
            path.display()
        ));
    }
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        // As root, a file owned by the service user is the normal case (`sudo kioskpay check`):
        // the advice is then to check as that user, not to take the file away from it.
        let fix = if me == 0 {
            format!(
                "if uid {} is the service user, run this as that user (sudo -u kioskpay …); \
                 otherwise chown it to the service user",
                meta.uid()
            )
        } else {
            format!("run: chown {me} {}", path.display())
        };
        return Err(format!(
            "owned by uid {}, not by the user kioskpay runs as (uid {me}) or root: that user can \
             rewrite or swap the secret; {fix}",
            meta.uid()
        ));
    }
    secret_dirs_are_safe(path, me)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!("the file is empty; write {what} into it"));
    }
    Ok(Secret::new(secret))
}

/// Refuses a secret reached through a directory another user could write to: whoever can write
/// a directory on the path can replace the file (or a directory under it) with their own. A
/// directory with the sticky bit (`/tmp`) is safe, since there only a file's owner may rename or
/// delete it, and the file's owner is checked separately.
fn secret_dirs_are_safe(path: &Path, me: u32) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // A symbolic link on the way is as good as a directory its owner can write.
    for step in path.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        let Ok(meta) = std::fs::symlink_metadata(step) else {
            continue;
        };
        if meta.file_type().is_symlink() && meta.uid() != me && meta.uid() != 0 {
            return Err(format!(
                "{} is a symbolic link owned by uid {}, who can point it at another file; use \
                 the real path, or a link owned by root or by uid {me}",
                step.display(),
                meta.uid()
            ));
        }
    }
    let real = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mode = meta.permissions().mode();
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            return Err(format!(
                "directory {} has mode {:03o}: other users can replace the secret in it; run: \
                 chmod go-w {} (or move the secret to a directory only root and kioskpay can write)",
                dir.display(),
                mode & 0o777,
                dir.display()
            ));
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(format!(
                "directory {} is owned by uid {}, who can replace the secret in it; keep the \
                 secret in a directory owned by root or by uid {me} (e.g. /etc/kioskpay)",
                dir.display(),
                meta.uid()
            ));
        }
    }
    Ok(())
}
