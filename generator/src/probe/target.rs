//! The URL a probe requests: `http://` or `https://`, a host (a name, an IPv4 address or a
//! bracketed IPv6 address), an optional port, and a path.

use serde::Serialize;

use super::ProbeError;

/// The URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// TLS (the gateway's mutual-TLS port).
    #[default]
    Https,
    /// Plain HTTP.
    Http,
}

/// A parsed URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// The scheme.
    pub scheme: Scheme,
    /// The host as written, without brackets.
    pub host: String,
    /// The port (the scheme's default when absent).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Target {
    /// Parses `url`.
    pub fn parse(url: &str) -> Result<Self, ProbeError> {
        let bad = |why: &str| ProbeError::Url {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(bad("expected https://HOST[:PORT]/PATH or http://…"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if authority.contains('@') {
            return Err(bad("user information is not supported"));
        }
        let (host, port) = split_host_port(authority).map_err(|why| bad(&why))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = port.unwrap_or(match scheme {
            Scheme::Https => 443,
            Scheme::Http => 80,
        });
        Ok(Target {
            scheme,
            host,
            port,
            path,
        })
    }

    /// `host:port` for dialling (IPv6 in brackets).
    pub fn authority_for_dialling(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL, normalised.
    pub fn url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Https => "https",
            Scheme::Http => "http",
        };
        format!("{scheme}://{}{}", self.authority_for_dialling(), self.path)
    }
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 address without its closing ]".to_owned())?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("unexpected {after:?} after the IPv6 address")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))
        })
        .transpose()?;
    Ok((host.to_ascii_lowercase(), port))
}

/// Checks `--connect HOST:PORT`.
pub fn check_connect(value: &str) -> Result<(), ProbeError> {
    match split_host_port(value) {
        Ok((host, Some(_))) if !host.is_empty() => Ok(()),
        _ => Err(ProbeError::Connect(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_refuse_what_they_cannot_be() {
        let t = Target::parse("https://helloworld.zufar.io/hello").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port, t.path.as_str()),
            (Scheme::Https, "helloworld.zufar.io", 443, "/hello")
        );
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (t.scheme, t.port, t.path.as_str()),
            (Scheme::Http, 8080, "/")
        );
        let t = Target::parse("https://[::1]:8443?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8443, "/?x=1")
        );
        assert_eq!(t.authority_for_dialling(), "[::1]:8443");
        for bad in [
            "ftp://x/",
            "helloworld.zufar.io",
            "https://:443/",
            "https://x:0/",
            "https://x:99999/",
            "https://u@x/",
            "https://[::1/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert!(check_connect("127.0.0.1:8443").is_ok());
        assert!(check_connect("127.0.0.1").is_err());
        assert!(check_connect(":8443").is_err());
    }
}
