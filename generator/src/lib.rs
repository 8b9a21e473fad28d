//! peergate's generator: the certificates and every Kubernetes/Istio object of both clusters,
//! from one declarative `mesh.toml`; and the audits that run the filter's policy core on
//! certificates and gateway logs. The library returns data and typed errors and never
//! prints; the `peergate` binary is a thin layer over it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod cert_manager;
pub mod certs;
pub mod gateway_api;
pub mod gen;
pub mod image;
pub mod istio;
pub mod kube_gateway;
pub mod layout;
pub mod logs;
pub mod manifests;
pub mod mesh;
pub mod monitoring;
pub mod output;
pub mod probe;
pub mod render;
pub mod revocation;
pub mod settings;

pub use gen::{generate, GenError, GenOptions, Report};
pub use mesh::{Mesh, MeshError};
