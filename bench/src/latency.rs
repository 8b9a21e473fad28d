//! Latencies the end-to-end tests only bound (they must not assert times): how long a policy
//! update takes to reach open connections, and how long a refused peer's connection stays
//! open at the connection layer. Each round is a fresh measurement; the report gives every
//! round and the median.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use peergate_e2e::backend::Backend;
use peergate_e2e::ecds::{publish, EcdsGateway};
use peergate_e2e::envoy::{filter_wasm, Envoy};
use peergate_e2e::gateway::{
    admin, downstream_mtls, network_wasm_filter, router_filter, static_cluster,
};
use peergate_e2e::pki::KeyKind;
use peergate_e2e::scenario::{Scenario, DOMAIN};
use serde_json::json;

/// Keep-alive connections sending requests back to back while the policy changes.
const CONNECTIONS: usize = 4;

/// Per round: the time from the rename of the ECDS file to the first refusal on the slowest
/// of `CONNECTIONS` open keep-alive connections, after a policy update that removes the
/// client's SAN (the request layer re-decides every request, so open connections see it).
pub fn policy_update(rounds: usize) -> anyhow::Result<Vec<f64>> {
    let world = Scenario::new(KeyKind::P256);
    let backend = Backend::start();
    let admitting = world.policy(json!({}));
    let gateway = EcdsGateway::start(&world, backend.addr, &admitting);
    let addr = gateway.envoy.listener("gateway");
    let client = world.client_for(&world.client);
    let mut version = 1;
    let mut lags = Vec::new();
    for _ in 0..rounds {
        // Admit again, and wait until every connection is served under that policy.
        version += 1;
        publish(gateway.dir.path(), version, &admitting);
        wait(|| gateway.counter("update_success") >= version as u64)?;
        let stop = Arc::new(AtomicBool::new(false));
        let refused: Vec<Arc<Mutex<Option<Instant>>>> = (0..CONNECTIONS)
            .map(|_| Arc::new(Mutex::new(None)))
            .collect();
        let published = Arc::new(Mutex::new(None::<Instant>));
        let threads: Vec<_> = refused
            .iter()
            .map(|slot| {
                let (slot, stop, client, published) = (
                    Arc::clone(slot),
                    Arc::clone(&stop),
                    client.clone(),
                    Arc::clone(&published),
                );
                std::thread::spawn(move || -> anyhow::Result<()> {
                    let mut connection = client.connect(addr, DOMAIN)?;
                    while !stop.load(Ordering::Relaxed) {
                        let status = connection.get(DOMAIN, "/hello", &[])?.status;
                        let after = published
                            .lock()
                            .map_err(|_| anyhow::anyhow!("lock"))?
                            .is_some();
                        if status == 403 && after {
                            let mut slot = slot.lock().map_err(|_| anyhow::anyhow!("lock"))?;
                            slot.get_or_insert_with(Instant::now);
                            return Ok(());
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        version += 1;
        *published.lock().map_err(|_| anyhow::anyhow!("lock"))? = Some(Instant::now());
        let at = Instant::now();
        publish(
            gateway.dir.path(),
            version,
            &world.policy(json!({ "allowedSans": ["spiffe://cluster-a/ns/client/sa/other"] })),
        );
        let done = wait(|| {
            refused
                .iter()
                .all(|slot| slot.lock().map(|s| s.is_some()).unwrap_or(false))
        });
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        }
        done.context("a connection was never refused after the update")?;
        let slowest = refused
            .iter()
            .filter_map(|slot| slot.lock().ok().and_then(|s| *s))
            .max()
            .context("no refusal recorded")?;
        lags.push((slowest - at).as_secs_f64() * 1000.0);
    }
    Ok(lags)
}

/// Per round: at layer `connection`, the time from a refused peer's request to the end of
/// its connection (the filter decides on the first bytes and closes).
pub fn refused_connection_close(rounds: usize) -> anyhow::Result<Vec<f64>> {
    let world = Scenario::new(KeyKind::P256);
    let backend = Backend::start();
    let policy = world.policy(json!({ "layer": "connection" }));
    let hcm = json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "gw",
            "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"],
                "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "backend" } }] }] },
            "http_filters": [router_filter()]
        }
    });
    let config = json!({
        "admin": admin(),
        "static_resources": {
            "listeners": [{
                "name": "gw",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{
                    "transport_socket": downstream_mtls(&world.server.cert_pem, &world.server.key_pem, &world.root.cert.cert_pem, &[]),
                    "filters": [network_wasm_filter("peergate", &filter_wasm(), &policy), hcm]
                }]
            }],
            "clusters": [static_cluster("backend", backend.addr, None)]
        }
    });
    let envoy = Envoy::start(&config)
        .map_err(|f| anyhow::anyhow!("the connection-layer gateway did not start:\n{}", f.log))?;
    let stranger = world.client_for(&world.stranger);
    let allowed = world.client_for(&world.client);
    let addr = envoy.listener("gw");
    // The allowed client gets through: the gateway decides, so a close means a refusal.
    if allowed.get(addr, DOMAIN, DOMAIN, "/hello", &[])?.status != 200 {
        bail!("the allowed client was refused at the connection layer");
    }
    let mut closes = Vec::new();
    for _ in 0..rounds {
        // A fresh connection: the TLS handshake is done before the clock starts.
        let mut connection = stranger.connect(addr, DOMAIN)?;
        let started = Instant::now();
        match connection.get(DOMAIN, "/hello", &[]) {
            Ok(response) => bail!(
                "the stranger got {} at the connection layer",
                response.status
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("the stranger's connection hung ({e})")
            }
            Err(_) => closes.push(started.elapsed().as_secs_f64() * 1000.0),
        }
    }
    if backend.count() != 1 {
        bail!(
            "{} requests reached the backend, want the allowed one",
            backend.count()
        );
    }
    Ok(closes)
}

fn wait(mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() > deadline {
            bail!("waited 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// `--latency-only`: the latencies, printed.
pub(crate) fn print_latency_only(rounds: usize) -> anyhow::Result<()> {
    for (what, mut rounds) in latencies(rounds)? {
        println!(
            "{what}: median {:.1} ms, rounds {rounds:.1?}",
            crate::stats::median(&mut rounds)
        );
    }
    Ok(())
}

/// The latencies the tests only bound, in rounds.
pub(crate) fn latencies(rounds: usize) -> anyhow::Result<Vec<(&'static str, Vec<f64>)>> {
    eprintln!("peergate-bench: latencies the tests only bound");
    Ok(vec![
        (
            "a policy update reaching the slowest of 4 open keep-alive connections (request layer, ECDS from a watched file)",
            policy_update(rounds)?,
        ),
        (
            "a refused peer's connection closed after its first request (connection layer)",
            refused_connection_close(rounds)?,
        ),
    ])
}
