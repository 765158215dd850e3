//! `host:port` of another node, as a setting: an IP address or a DNS name (a Kubernetes pod's
//! stable name, a compose service), resolved when the node starts.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// A node's address by IP or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr(String);

impl FromStr for PeerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<PeerAddr, String> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(PeerAddr(addr.to_string()));
        }
        let bad = || format!("{s:?} is not host:port");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        port.parse::<u16>().map_err(|_| bad())?;
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !name_ok {
            return Err(bad());
        }
        Ok(PeerAddr(s.to_ascii_lowercase()))
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> PeerAddr {
        PeerAddr(addr.to_string())
    }
}

impl PeerAddr {
    /// The first address the name resolves to (an IP resolves to itself).
    pub async fn resolve(&self) -> std::io::Result<SocketAddr> {
        if let Ok(addr) = self.0.parse::<SocketAddr>() {
            return Ok(addr);
        }
        tokio::net::lookup_host(self.0.as_str())
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{} resolves to no address", self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_and_names_parse_and_print_back() {
        for (input, shown) in [
            ("10.0.0.1:7400", "10.0.0.1:7400"),
            ("[::1]:7400", "[::1]:7400"),
            (
                "chatsdk-0.chatsdk.default.svc:7400",
                "chatsdk-0.chatsdk.default.svc:7400",
            ),
            ("Node1:7400", "node1:7400"),
        ] {
            let p: PeerAddr = input.parse().unwrap();
            assert_eq!(p.to_string(), shown);
        }
        for bad in [
            "node1",
            "node1:",
            ":7400",
            "no_underscores:1",
            "-x:1",
            "a..b:1",
            "h:99999",
        ] {
            assert!(bad.parse::<PeerAddr>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn names_resolve() {
        let p: PeerAddr = "localhost:7400".parse().unwrap();
        assert_eq!(p.resolve().await.unwrap().port(), 7400);
    }
}
