//! Reading threat feeds: a file beside the policy (through the policy's own
//! loader, so it stays inside the root folder) or an `https://` URL, fetched
//! with a timeout and a size limit. `check` and `build` read feeds through
//! [`FeedLoader`]; the agent reads them again on each feed's `refresh`.
//!
//! TLS: rustls with the webpki roots, plus the PEM certificates of
//! `SEGC_FEED_CA_FILE` (a private CA, or a test's). Plain http is refused by
//! the compiler before anything is fetched; redirects must stay on https.

use std::time::Duration;

use segc_compiler::source::{is_url, LoadError, Loader};

/// How long one fetch may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The most a feed may weigh: 256 bytes a prefix of `max_prefixes` (JSON
/// formats carry a region and service per prefix), plus 1 MiB, at most 256 MiB.
pub fn size_limit(max_prefixes: u32) -> u64 {
    (u64::from(max_prefixes) * 256 + (1 << 20)).min(256 << 20)
}

/// A loader that reads files through `inner` and fetches https feeds.
pub struct FeedLoader<L> {
    pub inner: L,
}

impl<L: Loader> Loader for FeedLoader<L> {
    fn read(&self, path: &str) -> Result<Vec<u8>, LoadError> {
        self.inner.read(path)
    }

    fn feed(&self, location: &str) -> Result<Vec<u8>, LoadError> {
        if is_url(location) {
            return fetch_url(location, size_limit(segc_compiler::ir::feed::DEFAULT_MAX_PREFIXES), TIMEOUT).map_err(LoadError::Io);
        }
        self.inner.read(location)
    }
}

/// Fetches `url` (https only), refusing a body over `limit` bytes or a
/// fetch slower than `timeout`.
#[cfg(feature = "https-feeds")]
pub fn fetch_url(url: &str, limit: u64, timeout: Duration) -> Result<Vec<u8>, String> {
    if !url.starts_with("https://") {
        return Err(format!("`{url}` is not an https:// URL"));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut builder =
            reqwest::Client::builder().https_only(true).timeout(timeout).connect_timeout(timeout.min(Duration::from_secs(10)));
        if let Some(path) = std::env::var_os("SEGC_FEED_CA_FILE") {
            let pem = std::fs::read(&path).map_err(|e| format!("cannot read SEGC_FEED_CA_FILE {}: {e}", path.to_string_lossy()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("SEGC_FEED_CA_FILE: {e}"))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        let mut resp = client.get(url).send().await.map_err(|e| describe(&e))?;
        if !resp.status().is_success() {
            return Err(format!("the server answered {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(format!("the feed is larger than {limit} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(format!("the feed is larger than {limit} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })
}

#[cfg(feature = "https-feeds")]
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

#[cfg(not(feature = "https-feeds"))]
pub fn fetch_url(url: &str, _limit: u64, _timeout: Duration) -> Result<Vec<u8>, String> {
    Err(format!("this segc was built without the `https-feeds` feature, so it cannot fetch `{url}`"))
}
