//! Hostile input against the real module in real Envoys: huge and malformed
//! `x-forwarded-client-cert` values, bytes that are not UTF-8, forged headers, more distinct
//! client certificates than the decision cache holds. Envoy must keep answering allowed peers,
//! refuse the others, and never lose or restart the VM (checked in `/stats` and the log).

use std::collections::BTreeMap;
use std::path::Path;

use peergate_e2e::backend::Backend;
use peergate_e2e::client::TlsClient;
use peergate_e2e::envoy::{envoy_binary, filter_wasm, legacy_envoy_binary, Envoy};
use peergate_e2e::gateway::{bootstrap, GatewayTls, MtlsListener, Xfcc};
use peergate_e2e::http::url_encode;
use peergate_e2e::pki::{key, Issued, KeyKind};
use peergate_e2e::scenario::{Scenario, CLIENT_ID, DOMAIN};
use serde_json::json;

/// The cast, and a policy that reads everything a request offers: a host rule (so
/// `:authority` is read on every request) and a log line for allowed requests too.
struct World(Scenario);

impl World {
    fn new() -> Self {
        World(Scenario::new(KeyKind::P256))
    }

    fn plugin_config(&self) -> String {
        self.0.policy(json!({
            "hosts": { DOMAIN: { "allowedSans": [CLIENT_ID] } },
            "logAllowed": true
        }))
    }
}

impl std::ops::Deref for World {
    type Target = Scenario;
    fn deref(&self) -> &Scenario {
        &self.0
    }
}

struct Gateway {
    envoy: Envoy,
    _backend: Backend,
}

fn start(binary: &Path, world: &World) -> Gateway {
    let backend = Backend::start();
    let listeners =
        [("set", Xfcc::SanitizeSet), ("append", Xfcc::AppendForward)].map(|(name, xfcc)| {
            MtlsListener {
                name: name.into(),
                plugin_config: world.plugin_config(),
                xfcc,
            }
        });
    let tls = GatewayTls {
        cert: &world.server.cert_pem,
        key: &world.server.key_pem,
        client_ca_bundle: &world.root.cert.cert_pem,
    };
    let envoy = Envoy::start_with(
        binary,
        &bootstrap(&listeners, &tls, &filter_wasm(), backend.addr),
    )
    .unwrap_or_else(|f| panic!("Envoy did not start:\n{}", f.log));
    Gateway {
        envoy,
        _backend: backend,
    }
}

/// Envoy's own statistics about wasm VMs (not the filter's counters): creations, the active
/// count and anything about failures.
/// Envoy's statistics of its wasm VMs. The runtime's are required: if they were missing, "the
/// same as at start" would hold of two empty maps.
fn vm_stats(envoy: &Envoy) -> BTreeMap<String, u64> {
    let stats: BTreeMap<String, u64> = envoy
        .stats("wasm")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("wasmcustom."))
        .collect();
    for name in [
        "wasm.envoy.wasm.runtime.v8.created",
        "wasm.envoy.wasm.runtime.v8.active",
    ] {
        assert!(
            stats.contains_key(name),
            "Envoy lists no {name}: the VM check would compare nothing ({stats:?})"
        );
    }
    stats
}

/// Lines in Envoy's log that a trapped or failed VM leaves.
fn vm_failure_lines(envoy: &Envoy) -> Vec<String> {
    envoy
        .log()
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("panicked")
                || l.contains("wasm vm failed")
                || l.contains("function: proxy_on")
                || l.contains("unreachable")
                || l.contains("uncaught")
                || (l.contains("[wasm]") && l.contains("critical"))
        })
        .map(str::to_owned)
        .collect()
}

fn request(host: &[u8], extra_headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut raw = b"GET /hello HTTP/1.1\r\nHost: ".to_vec();
    raw.extend_from_slice(host);
    raw.extend_from_slice(b"\r\n");
    for (name, value) in extra_headers {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

/// One hostile request and the statuses it may get: 200 when the peer is allowed and the
/// request is valid HTTP; Envoy's own 400/431 where its codec refuses the request before any
/// filter runs.
struct Hostile {
    name: &'static str,
    raw: Vec<u8>,
    allowed: &'static [u16],
}

fn hostile_requests(world: &World) -> Vec<Hostile> {
    let host = DOMAIN.as_bytes();
    let xfcc = |value: Vec<u8>| vec![("x-forwarded-client-cert", value)];
    let with = |name: &'static str, headers: Vec<(&str, Vec<u8>)>, allowed: &'static [u16]| {
        let borrowed: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, &v[..])).collect();
        Hostile {
            name,
            raw: request(host, &borrowed),
            allowed,
        }
    };
    let stranger_element = format!(
        "Hash={};Cert=\"{}\";URI=spiffe://cluster-x/ns/x/sa/x",
        peergate_filter::peer::hex(&peergate_filter::peer::fingerprint(
            &world.stranger.cert_der
        )),
        url_encode(&world.stranger.cert_pem)
    );
    let mut many_elements = String::new();
    for i in 0..4000 {
        many_elements.push_str(&format!("By=spiffe://x/{i};Cert=\"%ZZ\","));
    }
    vec![
        with(
            "a 50 KB XFCC value of one unterminated quote",
            xfcc(format!("Cert=\"{}", "A".repeat(50_000)).into_bytes()),
            &[200, 431],
        ),
        with(
            "4000 XFCC elements with broken escapes",
            xfcc(many_elements.into_bytes()),
            &[200, 431],
        ),
        with(
            "XFCC with unbalanced quotes and backslashes",
            xfcc(br#"Cert="\"\\\";Hash=zz;,,,;;;=;="a"b"c\"#.to_vec()),
            &[200],
        ),
        with(
            "XFCC with a truncated PEM",
            xfcc(
                format!(
                    "Cert=\"{}\"",
                    url_encode(&world.client.cert_pem[..world.client.cert_pem.len() / 2])
                )
                .into_bytes(),
            ),
            &[200],
        ),
        with(
            "our identity header, spoofed, with bytes that are not UTF-8",
            vec![
                ("x-peergate-peer", b"\xff\xfeadmin".to_vec()),
                ("X-PeerGate-Sans", b"\"URI:spiffe://admin\"".to_vec()),
            ],
            &[200, 400],
        ),
        Hostile {
            name: "a header name that is not UTF-8 (nor an HTTP token)",
            raw: {
                let mut raw = request(host, &[]);
                raw.truncate(raw.len() - 2);
                raw.extend_from_slice(b"x-peergate-\xff: 1\r\n\r\n");
                raw
            },
            allowed: &[400],
        },
        with(
            "XFCC bytes that are not UTF-8",
            xfcc(b"Cert=\"\xff\xfe\x80\";By=\xc3\x28".to_vec()),
            &[200, 400],
        ),
        with(
            "a forged element carrying another peer's certificate",
            xfcc(stranger_element.into_bytes()),
            &[200],
        ),
        with(
            "100 XFCC headers",
            (0..100)
                .map(|i| {
                    (
                        "x-forwarded-client-cert",
                        format!("By=spiffe://x/{i};Hash={}", "0".repeat(64)).into_bytes(),
                    )
                })
                .collect(),
            &[200],
        ),
        Hostile {
            name: "an authority that is not UTF-8",
            raw: request(b"helloworld\xff\xfe.zufar.io", &[]),
            allowed: &[200, 400, 403],
        },
        Hostile {
            name: "an 8 KB authority",
            raw: request("a.".repeat(4000).as_bytes(), &[]),
            allowed: &[200, 400, 403, 431],
        },
        Hostile {
            name: "an authority with a port, upper case and a trailing dot",
            raw: request(b"HelloWorld.Zufar.IO.:443", &[]),
            allowed: &[200, 403],
        },
    ]
}

/// Every hostile request, on both listeners, on the current Envoy and on one without the
/// connection property (where the filter reads XFCC): no 5xx, the allowed peer still gets
/// 200 afterwards, and the VM is the one that started.
#[test]
fn hostile_requests_never_trap_the_module() {
    let world = World::new();
    for (envoy_name, binary) in [
        ("Envoy 1.40", envoy_binary()),
        ("Envoy 1.36 (XFCC fallback)", legacy_envoy_binary()),
    ] {
        let gateway = start(&binary, &world);
        let envoy = &gateway.envoy;
        let vm_before = vm_stats(envoy);
        let client = world.client_for(&world.client);
        let shared_key = key(KeyKind::P256);
        let leaf = Scenario::client_leaf(KeyKind::P256);
        for listener in ["set", "append"] {
            let addr = envoy.listener(listener);
            for hostile in hostile_requests(&world) {
                // A certificate the gateway has not seen, so the hostile request is the one
                // that is decided (no cached decision), on a fresh connection (Envoy closes one
                // after a codec error).
                let fresh_peer = world.root.issue_for(&leaf, &shared_key);
                let mut connection = world.client_for(&fresh_peer).connect(addr, DOMAIN).unwrap();
                let status = match connection.send_raw(&hostile.raw) {
                    Ok(response) => response.status,
                    Err(e) => panic!(
                        "{envoy_name} {listener}: {}: no response: {e}",
                        hostile.name
                    ),
                };
                assert!(
                    hostile.allowed.contains(&status),
                    "{envoy_name} {listener}: {}: status {status}, expected one of {:?}\n{}",
                    hostile.name,
                    hostile.allowed,
                    vm_failure_lines(envoy).join("\n")
                );
                // The same connection, if Envoy kept it, and a new one still serve the peer.
                if status == 200 {
                    let again = connection.get(DOMAIN, "/hello", &[]).unwrap();
                    assert_eq!(
                        again.status, 200,
                        "{envoy_name} {listener}: {}",
                        hostile.name
                    );
                }
                let fresh = client.get(addr, DOMAIN, DOMAIN, "/hello", &[]).unwrap();
                assert_eq!(
                    fresh.status,
                    200,
                    "{envoy_name} {listener}: after {}: {}",
                    hostile.name,
                    vm_failure_lines(envoy).join("\n")
                );
            }
            // The stranger stays out whatever XFCC it forges, the allowed client's included.
            let forged = format!(
                "Hash={};Cert=\"{}\";URI={CLIENT_ID}",
                peergate_filter::peer::hex(&peergate_filter::peer::fingerprint(
                    &world.client.cert_der
                )),
                url_encode(&world.client.cert_pem)
            );
            let response = world
                .client_for(&world.stranger)
                .get(
                    addr,
                    DOMAIN,
                    DOMAIN,
                    "/hello",
                    &[("x-forwarded-client-cert", &forged)],
                )
                .unwrap();
            assert_eq!(response.status, 403, "{envoy_name} {listener}: forged XFCC");
        }
        assert_eq!(
            vm_stats(envoy),
            vm_before,
            "{envoy_name}: Envoy's wasm VM statistics changed (a VM failed or was recreated)"
        );
        let failures = vm_failure_lines(envoy);
        assert!(
            failures.is_empty(),
            "{envoy_name}:\n{}",
            failures.join("\n")
        );
    }
}

/// More distinct client certificates than the decision cache holds (1024 per worker VM, two
/// workers): every one is decided and admitted, the counters add up, and the VM lives on.
#[test]
fn more_distinct_certificates_than_the_cache_holds() {
    const PEERS: usize = 2600;
    let world = World::new();
    let gateway = start(&envoy_binary(), &world);
    let envoy = &gateway.envoy;
    let vm_before = vm_stats(envoy);
    let allowed_before = envoy.counter("wasmcustom.peergate.allowed");
    // One key, many certificates: each has its own serial and so its own SHA-256.
    let shared_key = key(KeyKind::P256);
    let leaf = Scenario::client_leaf(KeyKind::P256);
    let peers: Vec<Issued> = (0..PEERS)
        .map(|_| world.root.issue_for(&leaf, &shared_key))
        .collect();
    let addr = envoy.listener("set");
    let ca = world.root.cert.cert_pem.clone();
    std::thread::scope(|scope| {
        for chunk in peers.chunks(PEERS.div_ceil(4)) {
            let ca = ca.clone();
            scope.spawn(move || {
                for peer in chunk {
                    let client = TlsClient::new(&ca, Some((&peer.cert_pem, &peer.key_pem)));
                    let response = client.get(addr, DOMAIN, DOMAIN, "/hello", &[]).unwrap();
                    assert_eq!(response.status, 200);
                }
            });
        }
    });
    // Allowed requests reach Envoy's counter within 250 ms: exactly one count per peer.
    envoy.settle("allowed peers", &(PEERS as u64), |envoy| {
        envoy.counter("wasmcustom.peergate.allowed") - allowed_before
    });
    let response = world
        .client_for(&world.client)
        .get(addr, DOMAIN, DOMAIN, "/hello", &[])
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(vm_stats(envoy), vm_before, "a VM failed or was recreated");
    let failures = vm_failure_lines(envoy);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
