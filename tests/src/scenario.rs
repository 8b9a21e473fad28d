//! The cast most gateway tests need, made at test time: the agreed root, the gateway's server
//! certificate, an allowed client and a stranger from the same root, and the policy that
//! admits the client. Tests add their own peers (look-alike CAs, many clients) on top.

use std::time::Duration;

use serde_json::{json, Value};

use crate::backend::Backend;
use crate::client::{Outcome, TlsClient};
use crate::envoy::Envoy;
use crate::pki::{Ca, Issued, KeyKind, Leaf};

/// The gateway's host name (and the server certificate's DNS SAN).
pub const DOMAIN: &str = "helloworld.zufar.io";
/// The allowed client's identity (URI SAN).
pub const CLIENT_ID: &str = "spiffe://cluster-a/ns/client/sa/sleep";
/// The stranger's identity: same root, not allowed.
pub const STRANGER_ID: &str = "spiffe://cluster-x/ns/x/sa/x";

/// Root, server, allowed client and stranger, all of one key type.
pub struct Scenario {
    /// The agreed root CA.
    pub root: Ca,
    /// The gateway's certificate (DNS SAN `DOMAIN`).
    pub server: Issued,
    /// Allowed: URI SAN `CLIENT_ID`.
    pub client: Issued,
    /// From the root, URI SAN `STRANGER_ID`: not allowed.
    pub stranger: Issued,
}

impl Scenario {
    /// A new cast of `kind` keys.
    pub fn new(kind: KeyKind) -> Self {
        Self::with_server(kind, Leaf::server(DOMAIN, kind))
    }

    /// As [`Scenario::new`], with a server leaf of the caller's (more names, say).
    pub fn with_server(kind: KeyKind, server: Leaf) -> Self {
        let root = Ca::new("a-b-root-ca", kind);
        Scenario {
            server: root.issue(&server),
            client: root.issue(&Self::client_leaf(kind)),
            stranger: root.issue(&Leaf::client(
                "stranger",
                &[&format!("URI:{STRANGER_ID}")],
                kind,
            )),
            root,
        }
    }

    /// The allowed client's leaf, to issue more certificates with the same identity.
    pub fn client_leaf(kind: KeyKind) -> Leaf {
        Leaf::client("cluster-a-client", &[&format!("URI:{CLIENT_ID}")], kind)
    }

    /// The pluginConfig admitting `CLIENT_ID` under the root, with `extra` fields merged in
    /// (a `null` removes a field).
    pub fn policy(&self, extra: Value) -> String {
        merged(
            json!({
                "trustedIssuers": [self.root.cert.cert_pem],
                "allowedSans": [CLIENT_ID],
            }),
            extra,
        )
        .to_string()
    }

    /// A TLS client presenting `leaf` and trusting the root for the server.
    pub fn client_for(&self, leaf: &Issued) -> TlsClient {
        TlsClient::new(
            &self.root.cert.cert_pem,
            Some((&leaf.cert_pem, &leaf.key_pem)),
        )
    }
}

/// `base` with the fields of `extra` set over it; a `null` in `extra` removes the field.
pub fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(fields), Value::Object(more)) = (base.as_object_mut(), extra) {
        for (key, value) in more {
            if value.is_null() {
                fields.remove(&key);
            } else {
                fields.insert(key, value);
            }
        }
    }
    base
}

/// A configuration the plugin must refuse, on the listener `listener` of `config`: either
/// Envoy does not start, or it starts and passes nothing through the plugin; either way its log
/// says `expected`, and nothing reaches `backend`.
pub fn assert_fails_closed(
    config: &Value,
    listener: &str,
    client: &TlsClient,
    backend: &Backend,
    expected: &str,
) {
    match Envoy::start(config) {
        Err(failure) => assert!(
            failure.log.contains(expected),
            "Envoy's log should name the problem ({expected:?}):\n{}",
            failure.log
        ),
        Ok(envoy) => {
            // Refused (closed, or an error reply), but never a hang passing for one.
            let outcome =
                client.try_get(envoy.listener(listener), DOMAIN, DOMAIN, "/hello", expected);
            if let Outcome::Response(response) = outcome {
                assert_ne!(response.status, 200, "a bad config let a request through");
            }
            assert!(
                envoy
                    .wait_for_log_line(&[expected], Duration::from_secs(5))
                    .is_some(),
                "Envoy's log should name the problem ({expected:?}):\n{}",
                envoy.log()
            );
        }
    }
    assert_eq!(
        backend.count(),
        0,
        "no request may reach the backend ({expected})"
    );
}
