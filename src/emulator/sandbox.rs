//! The config of a kiosk paired with the emulator's seeded sandbox.
//!
//! The demo, the soak and the tests each run a kiosk against the emulator, and each needs the
//! same account, client, profile, store and terminal ids, a private secret file and a state
//! directory. They start from this one config and change only what they are about (a faster
//! poll, a display kind, a second terminal), so a key the config gains is added here once.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{ACCOUNT_ID, CLIENT_ID, CLIENT_SECRET, PAYOUT_DESTINATION_ID, PROFILE_ID, STORE_ID};

/// Writes the sandbox client's secret to `<dir>/client_secret` with mode 0600 (the daemon
/// refuses a secret file others can read) and returns its path.
pub fn write_secret(dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join("client_secret");
    std::fs::write(&path, format!("{CLIENT_SECRET}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

/// The TOML text of a kiosk (`kiosk.id = "kiosk-1"`, NOK, English) paired with `terminal` of
/// the sandbox at `base`, keeping its secret and state under `dir` (the secret file is the one
/// [`write_secret`] writes there), with each of `overrides` (TOML) merged in, in order: a table
/// in an override adds to the same table, and a key replaces the same key.
///
/// An override that is not TOML is an error that says where; the result is not checked as a
/// kioskpay config, so a test can also write a config the daemon must refuse.
pub fn config(
    base: &str,
    dir: &Path,
    terminal: &str,
    overrides: &[&str],
) -> Result<String, String> {
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    let text = format!(
        r#"
[kiosk]
id = "kiosk-1"
currency = "NOK"
language = "en"
max_amount = 1000000

[dintero]
account_id = {account}
client_id = {client}
client_secret_file = {secret}
profile_id = {profile}
checkout_url = {base}
api_url = {base}

[store]
id = {store}
terminal_id = {terminal}
payout_destination_id = {payout}

[state]
dir = {state}
"#,
        account = quoted(ACCOUNT_ID),
        client = quoted(CLIENT_ID),
        secret = quoted(&dir.join("client_secret").display().to_string()),
        profile = quoted(PROFILE_ID),
        base = quoted(base),
        store = quoted(STORE_ID),
        terminal = quoted(terminal),
        payout = quoted(PAYOUT_DESTINATION_ID),
        state = quoted(&dir.join("state").display().to_string()),
    );
    let mut config: toml::Table = text
        .parse()
        .map_err(|e| format!("the sandbox config is not TOML (a path with a newline?): {e}"))?;
    for (n, text) in overrides.iter().enumerate() {
        let table: toml::Table = text
            .parse()
            .map_err(|e| format!("override {n} of the sandbox config is not TOML: {e}"))?;
        merge(&mut config, table);
    }
    toml::to_string(&config).map_err(|e| e.to_string())
}

/// Merges `from` into `into`: tables recursively, any other value replaced.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => merge(mine, theirs),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_config_loads_and_overrides_merge_into_its_tables() {
        let dir = tempfile::tempdir().unwrap();
        write_secret(dir.path()).unwrap();
        let text = config(
            "http://127.0.0.1:9",
            dir.path(),
            super::super::TERMINAL_IDS[1],
            &[
                "[kiosk]\nid = \"soak\"\n[payment]\npoll_interval_ms = 50\n",
                "[payment]\npoll_interval_ms = 60\n",
            ],
        )
        .unwrap();
        let loaded = crate::config::Config::load_str(&text, &dir.path().join("k.toml")).unwrap();
        assert_eq!(loaded.kiosk.id.to_string(), "soak");
        assert_eq!(
            loaded.store.terminal_id.to_string(),
            super::super::TERMINAL_IDS[1]
        );
        assert_eq!(
            loaded.payment.polling.base(),
            std::time::Duration::from_millis(60)
        );
        assert_eq!(loaded.state.dir, dir.path().join("state"));
    }

    #[test]
    fn overrides_that_are_not_toml_are_refused_with_the_reason() {
        let e = config("http://x", Path::new("/tmp"), "T", &["[kiosk\n"]).unwrap_err();
        assert!(e.contains("override 0") && e.contains("not TOML"), "{e}");
    }
}
