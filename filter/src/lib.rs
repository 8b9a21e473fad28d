//! peergate's filter: peer-certificate policy for istio-ingressgateway.
//!
//! The policy core ([`config`], [`policy`], [`pattern`], [`peer`], [`profile`],
//! [`constraints`], [`signature`], [`verifier`], [`xfcc`],
//! [`cache`], [`decision_log`], [`audit`], [`inspect`], [`clock`], and with the `documents`
//! feature `document`) is plain Rust with no proxy-wasm types: it is tested natively
//! and shared with the `peergate` CLI. The proxy-wasm glue is compiled for wasm32 only (feature
//! `module`, on by default), as is `envoy` (feature `envoy`, implied by `module`), Envoy's side
//! of the core's host-independent pieces, which modules of other entry points link too.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod cache;
pub mod clock;
pub mod config;
pub mod constraints;
pub mod decision_log;
pub mod der;
pub mod directory_string;
#[cfg(feature = "documents")]
pub mod document;
pub mod hex;
pub mod identity;
pub mod inspect;
pub mod pattern;
pub mod peer;
pub mod policy;
pub mod profile;
pub mod reason;
pub mod request_path;
pub mod routes;
pub mod rsa_pkcs1;
pub mod signature;
pub mod subject;
pub mod trust;
pub mod verifier;
pub mod xfcc;

#[cfg(all(target_arch = "wasm32", feature = "envoy"))]
pub mod envoy;
#[cfg(all(target_arch = "wasm32", feature = "module"))]
mod glue;

pub use config::{HostConfig, Layer, Mode, PluginConfig, ScopedIssuer, TrustedIssuerConfig};
pub use policy::{compile, compile_json, Assessment, CompileError, Decision, Policy, Reason};
