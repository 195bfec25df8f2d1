//! `[callback]`: where the listener binds, the URL Dintero calls, and the signature secret.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::secret::Secret;

/// `[callback]`, parsed. Present only when the section is; without it the kiosk only polls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackConfig {
    /// Where the listener accepts connections, e.g. `0.0.0.0:8443` behind a TLS proxy.
    pub bind: SocketAddr,
    /// The URL Dintero calls: sent as the sessions' `url.callback_url`, and the host and path a
    /// signature covers.
    pub public_url: PublicUrl,
    /// File holding the account's signature secret; must not be group- or world-readable.
    pub signature_secret_file: PathBuf,
    /// The secret, read from `signature_secret_file` by `Config::load` (never by `parse`, so a
    /// config can be checked without it).
    pub signature_secret: Option<Secret>,
}

/// The callback URL as Dintero reaches it: `http://` or `https://`, a host, a path, and no
/// query or fragment of its own (kioskpay adds `report_error=true`, Dintero adds the ids).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// Parses a public URL; the error says what a valid one looks like.
    pub fn parse(text: &str) -> Result<PublicUrl, String> {
        const EXPECTED: &str = "the URL Dintero calls, such as https://kiosk-1.example.com/dintero/callback (http or https, a host, no query, no user)";
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .ok_or_else(|| EXPECTED.to_string())?;
        let host = rest.split('/').next().unwrap_or_default();
        let plain = |c: char| c.is_ascii_graphic() && !matches!(c, '?' | '#' | '@' | '\\');
        if host.is_empty() || host.starts_with(':') || !text.chars().all(plain) {
            return Err(EXPECTED.into());
        }
        Ok(PublicUrl(text.to_string()))
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `url.callback_url` of a session: failures and cancels are reported too, so that the
    /// kiosk hears of every ending early, not only of approvals.
    pub fn callback_url(&self) -> String {
        format!("{}?report_error=true", self.0)
    }

    /// The URL a callback with `query` was made to, as Dintero signed it: this URL's host and
    /// path (whatever a proxy in between rewrote) with the query the request carried.
    pub fn with_query(&self, query: &str) -> String {
        format!("{}?{query}", self.0)
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_is_http_with_a_host_and_no_query() {
        for good in [
            "https://kiosk-1.example.com/dintero/callback",
            "http://192.0.2.7:8080/cb",
            "https://example.com",
        ] {
            assert_eq!(PublicUrl::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "ftp://example.com/cb",
            "https:///cb",
            "https://:8443/cb",
            "https://example.com/cb?kiosk=1",
            "https://example.com/cb#x",
            "https://user:pw@example.com/cb",
            "https://example.com/c b",
            "example.com/cb",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad:?}");
        }
        let url = PublicUrl::parse("https://example.com/cb").unwrap();
        assert_eq!(
            url.callback_url(),
            "https://example.com/cb?report_error=true"
        );
        assert_eq!(url.with_query("a=1"), "https://example.com/cb?a=1");
    }
}
