//! The one HTTP client that calls out of the cluster, with its guard against server-side
//! request forgery.
//!
//! A webhook URL is checked when it is saved (http or https, a host, no credentials, at most
//! [`MAX_URL_LEN`] bytes). When a delivery is sent, the host is resolved here and only public
//! addresses are connected to: loopback, private, carrier-grade NAT, link-local (which holds
//! the cloud metadata address), unique-local, multicast, reserved, and IPv4 addresses hidden in
//! IPv6 (mapped, NAT64) are refused unless the host or the address is on the configured allow
//! list. Connecting to the resolved addresses themselves (a resolver, not a check followed by a
//! second lookup) leaves no room for a name that resolves differently the second time.
//! Redirects are not followed; each attempt has a time limit.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::HookConfig;

/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Why a webhook URL is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("url is not a valid absolute URL")]
    Malformed,
    #[error("url must be http or https")]
    Scheme,
    #[error("url must be at most {MAX_URL_LEN} bytes")]
    TooLong,
    #[error("url must name a host")]
    NoHost,
    #[error("url must not carry credentials")]
    Credentials,
}

/// Checks a webhook URL's form (not where it points: that is checked at delivery).
pub fn check_url(url: &str) -> Result<reqwest::Url, UrlError> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| UrlError::Malformed)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlError::Scheme);
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlError::Credentials);
    }
    Ok(parsed)
}

/// Which internal hosts may be called anyway (see the module docs).
#[derive(Debug, Default)]
pub struct Guard {
    hosts: Vec<String>,
    nets: Vec<(IpAddr, u8)>,
}

impl Guard {
    /// Parses allow-list entries: a CIDR range (`10.0.0.0/8`), an address, or a host name.
    pub fn new(allowed: &[String]) -> Result<Guard, String> {
        let mut guard = Guard::default();
        for entry in allowed {
            let entry = entry.trim();
            if let Some((addr, bits)) = entry.split_once('/') {
                let ip: IpAddr = addr
                    .parse()
                    .map_err(|_| format!("{entry}: not an address range"))?;
                let bits: u8 = bits
                    .parse()
                    .map_err(|_| format!("{entry}: not an address range"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                if bits > max {
                    return Err(format!("{entry}: prefix longer than {max} bits"));
                }
                guard.nets.push((ip, bits));
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                guard.nets.push((ip, if ip.is_ipv4() { 32 } else { 128 }));
            } else if !entry.is_empty() {
                guard.hosts.push(entry.to_ascii_lowercase());
            }
        }
        Ok(guard)
    }

    /// Whether `host` (a name) is allowed whatever it resolves to.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// Whether an address may be connected to.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.nets.iter().any(|(net, bits)| in_net(ip, *net, *bits))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn v4_public(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn v6_public(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_public(v4);
    }
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return v4_public(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, including fd00:ec2::254 (metadata)
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

/// Whether an address is a public one.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => v6_public(v6),
    }
}

/// Resolves names for the client, keeping only addresses the guard allows.
struct GuardedResolver(Arc<Guard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let any_host = guard.host_allowed(&host);
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| any_host || guard.ip_allowed(a.ip()))
                .collect();
            if allowed.is_empty() {
                let refused = std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{host} resolves only to internal addresses (not on the allow list)"),
                );
                return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The guarded client (see the module docs).
#[derive(Clone)]
pub struct HookClient {
    client: reqwest::Client,
    guard: Arc<Guard>,
}

/// The answer to one attempt: the status code, or why there was none.
pub type AttemptResult = Result<u16, String>;

impl HookClient {
    pub fn new(config: &HookConfig) -> Result<HookClient, String> {
        Self::build(
            &config.allowed_hosts,
            config.timeout,
            concat!("ChatSDK-Webhooks/", env!("CARGO_PKG_VERSION")),
        )
    }

    /// A guarded client with its own allow list, time limit and user agent (link previews).
    pub fn build(
        allowed_hosts: &[String],
        timeout: Duration,
        user_agent: &str,
    ) -> Result<HookClient, String> {
        let guard = Arc::new(Guard::new(allowed_hosts)?);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(user_agent)
            .build()
            .map_err(|e| format!("outbound client: {e}"))?;
        Ok(HookClient { client, guard })
    }

    /// Refuses a URL of the wrong form or naming an internal address (a name is checked
    /// when the resolver resolves it).
    fn check_target(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = check_url(url).map_err(|e| e.to_string())?;
        let host = parsed.host_str().unwrap_or_default();
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            if !self.guard.ip_allowed(ip) {
                return Err(format!(
                    "{ip} is an internal address (not on the allow list)"
                ));
            }
        }
        Ok(parsed)
    }

    /// GETs an HTML page: redirects followed by hand (at most `max_redirects`, each target
    /// checked like the first), only `text/html` (or XHTML) accepted, at most `max_bytes` of
    /// it read (the rest is not). No cookies or credentials are ever sent. Returns the final
    /// URL and the page.
    pub async fn get_html(
        &self,
        url: &str,
        max_bytes: usize,
        max_redirects: usize,
    ) -> Result<(String, String), String> {
        let mut current = self.check_target(url)?;
        for _ in 0..=max_redirects {
            let response = self
                .client
                .get(current.clone())
                .header(reqwest::header::ACCEPT, "text/html,application/xhtml+xml")
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        "timed out".to_string()
                    } else {
                        error_chain(&e)
                    }
                })?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("{status} without a Location"))?;
                let next = current
                    .join(location)
                    .map_err(|_| "a redirect to a malformed URL".to_string())?;
                current = self.check_target(next.as_str())?;
                continue;
            }
            if !status.is_success() {
                return Err(format!("answered {status}"));
            }
            let html = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.to_ascii_lowercase())
                .is_some_and(|v| v.starts_with("text/html") || v.starts_with("application/xhtml"));
            if !html {
                return Err("not an HTML page".into());
            }
            let mut body = Vec::new();
            let mut response = response;
            while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
                let room = max_bytes.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= max_bytes {
                    break;
                }
            }
            return Ok((
                current.to_string(),
                String::from_utf8_lossy(&body).into_owned(),
            ));
        }
        Err(format!("more than {max_redirects} redirects"))
    }

    /// POSTs a JSON `body` with `headers`; a status code for any answer, an error for none
    /// (refused address, connection failure, timeout).
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> AttemptResult {
        self.post_as(url, "application/json", headers, body).await
    }

    /// [`HookClient::post`] with another content type.
    pub async fn post_as(
        &self,
        url: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> AttemptResult {
        // An address in the URL is not resolved, so it is checked here.
        let parsed = self.check_target(url)?;
        let mut request = self
            .client
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        match request.body(body).send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) if e.is_timeout() => Err("timed out".into()),
            Err(e) => Err(error_chain(&e)),
        }
    }
}

/// An error with its causes (reqwest's own message hides the interesting part).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let g = Guard::new(&[]).unwrap();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "ff02::1",
        ] {
            assert!(!g.ip_allowed(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(g.ip_allowed(good.parse().unwrap()), "{good}");
        }
        let g = Guard::new(&[
            "127.0.0.1".into(),
            "10.0.0.0/8".into(),
            "Intranet.local".into(),
        ])
        .unwrap();
        assert!(g.ip_allowed("127.0.0.1".parse().unwrap()));
        assert!(!g.ip_allowed("127.0.0.2".parse().unwrap()));
        assert!(g.ip_allowed("10.9.9.9".parse().unwrap()));
        assert!(g.host_allowed("intranet.local."));
        assert!(Guard::new(&["10.0.0.0/33".into()]).is_err());
    }

    #[test]
    fn urls_are_checked_for_form() {
        assert!(check_url("https://example.com/hook").is_ok());
        assert_eq!(
            check_url("ftp://example.com").unwrap_err(),
            UrlError::Scheme
        );
        assert_eq!(check_url("not a url").unwrap_err(), UrlError::Malformed);
        assert_eq!(
            check_url("https://user:pw@example.com/").unwrap_err(),
            UrlError::Credentials
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(check_url(&long).unwrap_err(), UrlError::TooLong);
    }
}
