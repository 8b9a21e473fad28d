//! Policy updates under load, the way Istio delivers a WasmPlugin's `pluginConfig`: the
//! filter's configuration comes from Envoy's extension config discovery (ECDS), here from a
//! file Envoy watches, while allowed clients keep sending requests on kept-alive connections.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peergate_e2e::backend::Backend;
use peergate_e2e::client::TlsClient;
use peergate_e2e::ecds::{discovered, ecds_counter, http_layer_bootstrap, publish, CONFIG_FILE};
use peergate_e2e::envoy::Envoy;
use peergate_e2e::gateway::router_filter;
use peergate_e2e::pki::KeyKind;
use peergate_e2e::scenario::{merged, Scenario, CLIENT_ID, DOMAIN};
use serde_json::{json, Value};

const LOAD_CONNECTIONS: usize = 4;

fn policy(world: &Scenario, allowed: &[&str], extra: Value) -> String {
    world.policy(merged(json!({ "allowedSans": allowed }), extra))
}

/// What one load connection saw: every response status with its time, and any failure.
#[derive(Default)]
struct Seen {
    responses: Vec<(Instant, u16)>,
    failures: Vec<String>,
}

/// A bounded load: `LOAD_CONNECTIONS` kept-alive connections, one thread each, sending GETs
/// back to back until `stop`.
fn start_load(
    client: &TlsClient,
    addr: std::net::SocketAddr,
    stop: &Arc<AtomicBool>,
) -> Vec<(Arc<Mutex<Seen>>, std::thread::JoinHandle<()>)> {
    (0..LOAD_CONNECTIONS)
        .map(|_| {
            let seen = Arc::new(Mutex::new(Seen::default()));
            let (record, stop, client) = (Arc::clone(&seen), Arc::clone(stop), client.clone());
            let handle = std::thread::spawn(move || {
                let mut connection = client.connect(addr, DOMAIN).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match connection.get(DOMAIN, "/hello", &[]) {
                        Ok(response) => record
                            .lock()
                            .unwrap()
                            .responses
                            .push((Instant::now(), response.status)),
                        Err(e) => {
                            record.lock().unwrap().failures.push(e.to_string());
                            return;
                        }
                    }
                    // Keeps the rate bounded (a few hundred per second per connection).
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            (seen, handle)
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn policy_updates_under_load_drop_nothing_and_take_effect_on_open_connections() {
    let world = Scenario::new(KeyKind::P256);
    let backend = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join(CONFIG_FILE);
    let mut version = 1;
    publish(
        dir.path(),
        version,
        &policy(&world, &[CLIENT_ID], json!({})),
    );
    let envoy = Envoy::start(&http_layer_bootstrap(&world, &config_path, backend.addr))
        .unwrap_or_else(|f| panic!("Envoy did not start:\n{}", f.log));
    let addr = envoy.listener("gateway");
    let client = world.client_for(&world.client);
    let stranger = world.client_for(&world.stranger);
    wait_for("the first configuration", Duration::from_secs(10), || {
        ecds_counter(&envoy, "update_success") >= 1
    });
    let stranger_serial = {
        let info = peergate_filter::inspect::inspect(
            &world.stranger.cert_der,
            std::time::SystemTime::now(),
        )
        .unwrap();
        info.serial
    };

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&client, addr, &stop);
    // The load is running on every connection before the first update.
    let answered_since = |since: Instant| {
        load.iter().all(|(seen, _)| {
            seen.lock()
                .unwrap()
                .responses
                .iter()
                .any(|(at, _)| *at > since)
        })
    };
    let started = Instant::now();
    wait_for(
        "the load on every connection",
        Duration::from_secs(10),
        || answered_since(started),
    );

    // Ten updates that all keep the client admitted, each confirmed applied by Envoy.
    let keep_admitting = [
        json!({ "logAllowed": true }),
        json!({ "denyStatus": 401 }),
        json!({ "deniedSerials": [stranger_serial] }),
        json!({ "mode": "audit" }),
        json!({ "hosts": { DOMAIN: { "allowedSans": [CLIENT_ID] } } }),
        json!({ "allowedSans": [CLIENT_ID, "spiffe://cluster-a/ns/other/*"] }),
        json!({ "deniedFingerprints": ["00".repeat(32)] }),
        json!({ "hosts": { "other.zufar.io": { "allowedSans": ["spiffe://cluster-x/*"] } } }),
        json!({ "logAllowed": false, "denyStatus": 403 }),
        json!({}),
    ];
    for extra in keep_admitting {
        let successes = ecds_counter(&envoy, "update_success");
        version += 1;
        let config = policy(&world, &[CLIENT_ID], extra.clone());
        publish(dir.path(), version, &config);
        wait_for(
            &format!("update {version} ({extra})"),
            Duration::from_secs(10),
            || ecds_counter(&envoy, "update_success") > successes,
        );
        assert_eq!(
            ecds_counter(&envoy, "update_rejected"),
            0,
            "{extra}:\n{}",
            envoy.log()
        );
        // Every connection is answered under this policy before the next one.
        let applied = Instant::now();
        wait_for(
            &format!("the load under update {version}"),
            Duration::from_secs(10),
            || answered_since(applied),
        );
        // Under denyStatus 401 a refusal carries that status, on a new connection too.
        if extra.get("denyStatus") == Some(&json!(401)) {
            stranger
                .try_get(
                    addr,
                    DOMAIN,
                    DOMAIN,
                    "/hello",
                    "the stranger under denyStatus 401",
                )
                .assert_denied(401, "san_not_allowed", "the stranger under denyStatus 401");
        }
    }
    // The updates reached new connections too: the stranger is refused with the status of
    // the last update (denyStatus 403 again).
    stranger
        .try_get(
            addr,
            DOMAIN,
            DOMAIN,
            "/hello",
            "the stranger after the updates",
        )
        .assert_denied(403, "san_not_allowed", "the stranger after the updates");

    // A broken configuration: Envoy rejects the update and the previous policy serves on.
    let rejections = ecds_counter(&envoy, "update_rejected");
    let successes = ecds_counter(&envoy, "update_success");
    let rejected_log =
        "peergate: rejecting configuration: trustedIssuers[0]: not a PEM certificate";
    version += 1;
    let broken = json!({ "trustedIssuers": ["not a certificate"], "allowedSans": [CLIENT_ID] });
    publish(dir.path(), version, &broken.to_string());
    wait_for(
        "the broken update to be rejected",
        Duration::from_secs(10),
        || ecds_counter(&envoy, "update_rejected") > rejections,
    );
    assert_eq!(ecds_counter(&envoy, "update_success"), successes);
    for (who, line) in [
        ("the filter says why", rejected_log),
        (
            "Envoy says it kept the previous configuration",
            "config update rejected: Unable to create Wasm plugin peergate",
        ),
    ] {
        assert!(
            envoy
                .wait_for_log_line(&[line], Duration::from_secs(5))
                .is_some(),
            "{who} ({line:?}):\n{}",
            envoy.log()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let still = client.get(addr, DOMAIN, DOMAIN, "/hello", &[]).unwrap();
    assert_eq!(still.status, 200, "the previous policy keeps serving");
    let refused = stranger.get(addr, DOMAIN, DOMAIN, "/hello", &[]).unwrap();
    assert_eq!(refused.status, 403, "and keeps refusing");

    // No request of the load failed or was refused through all of that.
    let mut requests = 0;
    for (seen, _) in &load {
        requests += seen.lock().unwrap().responses.len();
        let seen = seen.lock().unwrap();
        assert!(seen.failures.is_empty(), "{:?}", seen.failures);
        let refused: Vec<u16> = seen
            .responses
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| *s != 200)
            .collect();
        assert!(refused.is_empty(), "statuses other than 200: {refused:?}");
    }

    eprintln!(
        "{requests} requests on {LOAD_CONNECTIONS} connections through 10 updates and 1 rejected one: all 200"
    );

    // Removing the client's SAN takes effect on the existing connections (how fast is
    // measured by `cargo make bench`; here only that it happens, within a generous bound).
    let removed_at = Instant::now();
    version += 1;
    publish(
        dir.path(),
        version,
        &policy(
            &world,
            &["spiffe://cluster-a/ns/client/sa/other"],
            json!({}),
        ),
    );
    wait_for(
        "a refusal on every open connection after the SAN was removed",
        Duration::from_secs(10),
        || {
            load.iter().all(|(seen, _)| {
                seen.lock()
                    .unwrap()
                    .responses
                    .iter()
                    .any(|(at, status)| *at > removed_at && *status == 403)
            })
        },
    );
    stop.store(true, Ordering::Relaxed);
    let mut lags = Vec::new();
    for (seen, handle) in load {
        handle.join().unwrap();
        let seen = seen.lock().unwrap();
        assert!(seen.failures.is_empty(), "{:?}", seen.failures);
        let after: Vec<&(Instant, u16)> = seen
            .responses
            .iter()
            .filter(|(at, _)| *at > removed_at)
            .collect();
        let first_refusal = after
            .iter()
            .position(|(_, s)| *s == 403)
            .expect("the connection was refused after the SAN was removed");
        let lag = after[first_refusal].0 - removed_at;
        assert!(
            after[first_refusal..].iter().all(|(_, s)| *s == 403),
            "once refused, a connection stays refused"
        );
        lags.push(lag);
    }
    eprintln!("SAN removal reached the {LOAD_CONNECTIONS} open connections after {lags:?}");
    assert_eq!(ecds_counter(&envoy, "update_rejected"), rejections + 1);
}

/// At layer `connection` (the network filter through ECDS) an update applies to new
/// connections; a connection admitted before it keeps its decision for its whole life, as the
/// README says.
#[test]
fn at_the_connection_layer_an_update_applies_to_new_connections() {
    let world = Scenario::new(KeyKind::P256);
    let backend = Backend::start();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join(CONFIG_FILE);
    let connection_policy =
        |allowed: &str| world.policy(json!({ "layer": "connection", "allowedSans": [allowed] }));
    publish(dir.path(), 1, &connection_policy(CLIENT_ID));
    let mut config = http_layer_bootstrap(&world, &config_path, backend.addr);
    let chain = &mut config["static_resources"]["listeners"][0]["filter_chains"][0];
    let hcm = chain["filters"][0].clone();
    chain["filters"] = json!([
        discovered(
            &config_path,
            "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"
        ),
        hcm
    ]);
    chain["filters"][1]["typed_config"]["http_filters"] = json!([router_filter()]);
    let envoy = Envoy::start(&config).unwrap_or_else(|f| panic!("Envoy did not start:\n{}", f.log));
    let addr = envoy.listener("gateway");
    let client = world.client_for(&world.client);
    wait_for("the first configuration", Duration::from_secs(10), || {
        ecds_counter(&envoy, "update_success") >= 1
    });
    let mut admitted = client.connect(addr, DOMAIN).unwrap();
    assert_eq!(admitted.get(DOMAIN, "/hello", &[]).unwrap().status, 200);

    publish(
        dir.path(),
        2,
        &connection_policy("spiffe://cluster-a/ns/client/sa/other"),
    );
    wait_for("the update", Duration::from_secs(10), || {
        ecds_counter(&envoy, "update_success") >= 2
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        admitted.get(DOMAIN, "/hello", &[]).unwrap().status,
        200,
        "the connection admitted before the update keeps its decision"
    );
    let before = backend.count();
    client
        .try_get(
            addr,
            DOMAIN,
            DOMAIN,
            "/hello",
            "a new connection after the update",
        )
        .assert_closed("a new connection is decided by the new policy");
    assert_eq!(backend.count(), before);
}
