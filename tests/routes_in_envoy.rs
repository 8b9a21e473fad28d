//! Routes and the forwarded identity inside a real Envoy: partner A may call `/payments/`
//! (GET, POST), partner B only `GET /status`; the backend echoes what it received, so the
//! identity headers it gets, and the client-sent ones it must never get, are seen there.

use peergate_e2e::backend::{Backend, Seen};
use peergate_e2e::client::TlsClient;
use peergate_e2e::envoy::{filter_wasm, Envoy};
use peergate_e2e::gateway::{bootstrap, GatewayTls, MtlsListener, Xfcc};
use peergate_e2e::http::Response;
use peergate_e2e::pki::{Ca, Issued, KeyKind, Leaf};
use peergate_e2e::scenario::{CLIENT_ID, DOMAIN};
use peergate_filter::{Mode, PluginConfig};

const PARTNER_B: &str = "spiffe://partner-b/ns/status/sa/poller";

struct World {
    root: Ca,
    server: Issued,
    a: Issued,
    b: Issued,
}

impl World {
    fn new() -> Self {
        let root = Ca::new("a-b-root-ca", KeyKind::P256);
        World {
            server: root.issue(&Leaf::server(DOMAIN, KeyKind::P256)),
            a: root.issue(&Leaf::client(
                "partner-a",
                &[&format!("URI:{CLIENT_ID}")],
                KeyKind::P256,
            )),
            b: root.issue(&Leaf::client(
                "partner-b",
                &[&format!("URI:{PARTNER_B}")],
                KeyKind::P256,
            )),
            root,
        }
    }

    /// The README's example: one partner per path.
    fn policy(&self, mode: Mode, forward_identity: bool) -> PluginConfig {
        let mut config: PluginConfig = serde_json::from_value(serde_json::json!({
            "trustedIssuers": [self.root.cert.cert_pem],
            "mode": mode.as_str(),
            "forwardIdentity": forward_identity,
            "hosts": {
                DOMAIN: {
                    "allowedSans": [CLIENT_ID, "spiffe://partner-b/*"],
                    "routes": [
                        {"pathPrefix": "/payments/", "methods": ["GET", "POST"], "allowedSans": [CLIENT_ID]},
                        {"pathPrefix": "/status", "methods": ["GET"]}
                    ]
                }
            }
        }))
        .unwrap();
        config.mode = mode;
        config
    }

    fn client(&self, leaf: &Issued) -> TlsClient {
        TlsClient::new(
            &self.root.cert.cert_pem,
            Some((&leaf.cert_pem, &leaf.key_pem)),
        )
    }
}

/// An echoing backend: answers 200 with every header it received, one per line.
fn echo(seen: &Seen) -> (u16, String) {
    let body: String = seen
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\n"))
        .collect();
    (200, body)
}

struct Gateway {
    envoy: Envoy,
    backend: Backend,
}

fn start(world: &World, listeners: &[(&str, PluginConfig)]) -> Gateway {
    let backend = Backend::start_with(echo, 0);
    let tls = GatewayTls {
        cert: &world.server.cert_pem,
        key: &world.server.key_pem,
        client_ca_bundle: &world.root.cert.cert_pem,
    };
    let listeners: Vec<MtlsListener> = listeners
        .iter()
        .map(|(name, config)| MtlsListener {
            name: (*name).into(),
            plugin_config: config.to_json(),
            xfcc: Xfcc::SanitizeSet,
        })
        .collect();
    let envoy = Envoy::start(&bootstrap(&listeners, &tls, &filter_wasm(), backend.addr))
        .unwrap_or_else(|f| panic!("Envoy did not start:\n{}", f.log));
    Gateway { envoy, backend }
}

/// Sends `method path` with extra header lines, as written, on a new connection.
fn send(
    gw: &Gateway,
    listener: &str,
    client: &TlsClient,
    method: &str,
    path: &str,
    extra: &str,
) -> Response {
    let request = format!("{method} {path} HTTP/1.1\r\nhost: {DOMAIN}\r\n{extra}connection: close\r\ncontent-length: 0\r\n\r\n");
    client
        .connect(gw.envoy.listener(listener), DOMAIN)
        .and_then(|mut c| c.send_raw(request.as_bytes()))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The values of a header in the backend's echo (every occurrence).
fn echoed(response: &Response, name: &str) -> Vec<String> {
    response
        .text()
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_owned())
        .collect()
}

fn denied(response: &Response, reason: &str, what: &str) {
    assert_eq!(response.status, 403, "{what}: {}", response.text());
    assert_eq!(response.header("x-peergate-reason"), Some(reason), "{what}");
}

#[test]
fn each_route_admits_its_partner_and_method() {
    let world = World::new();
    let gw = start(&world, &[("enforce", world.policy(Mode::Enforce, true))]);
    let (a, b) = (world.client(&world.a), world.client(&world.b));
    let r = send(&gw, "enforce", &a, "POST", "/payments/charge", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(echoed(&r, "x-peergate-peer"), [CLIENT_ID]);
    assert_eq!(
        echoed(&r, "x-peergate-sans"),
        [format!("\"URI:{CLIENT_ID}\"")]
    );
    assert_eq!(
        echoed(&r, "x-peergate-fingerprint"),
        [peergate_filter::hex::hex(
            &peergate_filter::peer::fingerprint(&world.a.cert_der)
        )]
    );
    assert_eq!(echoed(&r, "x-peergate-subject").len(), 1);
    assert_eq!(echoed(&r, "x-peergate-issuer").len(), 1);
    denied(
        &send(&gw, "enforce", &a, "DELETE", "/payments/charge", ""),
        "route_not_allowed",
        "A DELETE",
    );
    denied(
        &send(&gw, "enforce", &b, "GET", "/payments/charge", ""),
        "route_not_allowed",
        "B on payments",
    );
    let r = send(&gw, "enforce", &b, "GET", "/status", "");
    assert_eq!(r.status, 200);
    assert_eq!(echoed(&r, "x-peergate-peer"), [PARTNER_B]);
    denied(
        &send(&gw, "enforce", &b, "POST", "/status", ""),
        "route_not_allowed",
        "B POST status",
    );
    denied(
        &send(&gw, "enforce", &b, "PATCH", "/status", ""),
        "route_not_allowed",
        "B PATCH status",
    );
    // Methods are case-sensitive; this Envoy's HTTP/1 codec refuses a lower-case one itself.
    assert_eq!(send(&gw, "enforce", &b, "get", "/status", "").status, 400);
    // No route: the host's names.
    assert_eq!(send(&gw, "enforce", &b, "GET", "/other", "").status, 200);
    let log = gw.envoy.wait_for_log_line(
        &["route_not_allowed", "\"route\":\"/payments/\""],
        std::time::Duration::from_secs(10),
    );
    assert!(
        log.is_some(),
        "no decision line names the route:\n{}",
        gw.envoy.log()
    );
}

#[test]
fn a_client_sent_identity_header_never_reaches_the_backend() {
    let world = World::new();
    let gw = start(
        &world,
        &[
            ("enforce", world.policy(Mode::Enforce, true)),
            ("audit", world.policy(Mode::Audit, true)),
            ("quiet", world.policy(Mode::Enforce, false)),
        ],
    );
    let b = world.client(&world.b);
    let spoof = "x-peergate-peer: admin\r\nX-PeerGate-Peer: admin2\r\nX-PEERGATE-SANS: \"URI:spiffe://admin\"\r\nx-peergate-audit: allow\r\nx-peergate-: x\r\n";
    for listener in ["enforce", "audit", "quiet"] {
        let r = send(&gw, listener, &b, "GET", "/status", spoof);
        assert_eq!(r.status, 200, "{listener}: {}", r.text());
        let peers = echoed(&r, "x-peergate-peer");
        let want: Vec<String> = if listener == "quiet" {
            vec![]
        } else {
            vec![PARTNER_B.into()]
        };
        assert_eq!(peers, want, "{listener}");
        assert!(echoed(&r, "x-peergate-audit").is_empty(), "{listener}");
        assert!(echoed(&r, "x-peergate-").is_empty(), "{listener}");
        for (name, _) in r.text().lines().filter_map(|l| l.split_once(": ")) {
            assert!(
                !name.to_ascii_lowercase().starts_with("x-peergate-") || listener != "quiet",
                "{listener}: {name}"
            );
        }
        let sans = echoed(&r, "x-peergate-sans");
        assert!(
            sans.iter().all(|s| !s.contains("admin")),
            "{listener}: {sans:?}"
        );
    }
    // Audit mode: a would-be denial passes and says so; its identity is not forwarded.
    let r = send(&gw, "audit", &b, "GET", "/payments/charge", spoof);
    assert_eq!(r.status, 200);
    assert_eq!(echoed(&r, "x-peergate-audit"), ["deny route_not_allowed"]);
    assert!(echoed(&r, "x-peergate-peer").is_empty());
    assert_eq!(gw.backend.count(), 4);
}

/// Every spelling of a path: refused by the filter (`unnormalized_path`) or by Envoy's codec
/// before it (400), or decided on the canonical path, as the table says. This gateway does
/// not normalise (Envoy's default); Istio's own normalisation is the oracle's part.
#[test]
fn path_spellings_are_refused_or_matched_exactly() {
    let world = World::new();
    let gw = start(&world, &[("enforce", world.policy(Mode::Enforce, true))]);
    let b = world.client(&world.b);
    // (path, what B gets: 200, a 403 reason, or 400 from Envoy itself)
    let table: &[(&str, &str)] = &[
        ("/status", "200"),
        ("/status?x=/../payments/", "200"),
        ("/status#frag", "400"),
        ("/payments/x", "route_not_allowed"),
        ("/status/../payments/x", "unnormalized_path"),
        ("/x/../status", "unnormalized_path"),
        ("/./status", "unnormalized_path"),
        ("/payments/./x", "unnormalized_path"),
        ("/%2e%2e/payments/x", "unnormalized_path"),
        ("/%2E/status", "unnormalized_path"),
        ("/payments%2Fx", "unnormalized_path"),
        ("/payments%2fx", "unnormalized_path"),
        ("/payments%5Cx", "unnormalized_path"),
        ("//payments/x", "unnormalized_path"),
        ("/payments//x", "unnormalized_path"),
        ("/st%61tus", "unnormalized_path"),
        ("/status/%zz", "unnormalized_path"),
        ("/payments\\x", "unnormalized_path"),
        ("/pay|ments/x", "unnormalized_path"),
        ("/status%20x", "200"),
        ("/payments/x?a=b", "route_not_allowed"),
        ("/STATUS", "200"),
    ];
    assert!(table.len() >= 20);
    for (path, want) in table {
        let r = send(&gw, "enforce", &b, "GET", path, "");
        match *want {
            "200" | "400" => assert_eq!(r.status.to_string(), *want, "{path}: {}", r.text()),
            reason => denied(&r, reason, path),
        }
    }
}
