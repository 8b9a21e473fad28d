//! Test support for peergate: certificates made at test time, and a real Envoy driven from
//! tests (process ownership, configuration, a TLS client and a recording backend).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod backend;
pub mod client;
pub mod ecds;
pub mod envoy;
pub mod gateway;
pub mod http;
pub mod istio_xds;
pub mod pki;
pub mod scenario;
