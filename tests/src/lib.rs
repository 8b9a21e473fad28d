//! Test support for peergate: certificates made at test time, and a real Envoy driven from
//! tests (process ownership, configuration, a TLS client and a recording backend).

pub mod backend;
pub mod client;
pub mod ecds;
pub mod envoy;
pub mod gateway;
pub mod http;
pub mod istio_xds;
pub mod pki;
pub mod scenario;
pub mod wycheproof_vectors;
