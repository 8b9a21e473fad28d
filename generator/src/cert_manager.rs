//! cert-manager's side of `certificates = "cert-manager"`: a `Certificate` per leaf, asking for
//! what `gen` would have issued (names, usages, validity, key), and the default CA `Issuer`.
//! Field names are cert-manager's `cert-manager.io/v1` API; the oracle validates them against
//! a pinned release's CRDs.

use std::time::Duration;

use serde::Serialize;

use crate::certs::{leaf_sans, san_type, Role};
use crate::mesh::{IssuerRef, KeyType, Mesh};

/// `Certificate.spec`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// The Secret cert-manager writes (`tls.crt`, `tls.key`, `ca.crt`): what the
    /// DestinationRule or the Gateway reads.
    pub secret_name: String,
    /// The subject CN, as `gen` names the leaf.
    pub common_name: String,
    /// DNS SANs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// URI SANs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<String>,
    /// IP SANs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// Email SANs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub email_addresses: Vec<String>,
    /// Key usages: digital signature (and key encipherment for RSA), and client auth or
    /// server auth, as `gen`'s leaves have them (the filter's client profile needs them).
    pub usages: Vec<&'static str>,
    /// The leaf's validity (Go duration).
    pub duration: String,
    /// When cert-manager renews: a third of the validity before notAfter (its own default
    /// rule, said explicitly).
    pub renew_before: String,
    /// The key.
    pub private_key: PrivateKey,
    /// Who signs.
    pub issuer_ref: IssuerRefSpec,
}

/// `Certificate.spec.privateKey`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivateKey {
    /// `RSA`, `ECDSA` or `Ed25519`.
    pub algorithm: &'static str,
    /// Bits (RSA) or curve size (ECDSA); absent for Ed25519.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// `Always`: every renewal makes a new key (cert-manager >= 1.18's default, said
    /// explicitly for older ones).
    pub rotation_policy: &'static str,
    /// `PKCS8`, the form `gen`'s keys have.
    pub encoding: &'static str,
}

/// `Certificate.spec.issuerRef`.
#[derive(Debug, Clone, Serialize)]
pub struct IssuerRefSpec {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its API group.
    pub group: String,
}

/// `Issuer.spec` of a CA issuer.
#[derive(Debug, Clone, Serialize)]
pub struct CaIssuerSpec {
    /// `ca`.
    pub ca: CaIssuer,
}

/// `Issuer.spec.ca`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaIssuer {
    /// The Secret with the CA's `tls.crt` and `tls.key`.
    pub secret_name: String,
}

/// A Go duration (`8760h`, `90m`, `1h30m15s`).
pub fn go_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || out.is_empty() {
        out.push_str(&format!("{seconds}s"));
    }
    out
}

fn private_key(key_type: KeyType) -> PrivateKey {
    let (algorithm, size) = match key_type {
        KeyType::Rsa2048 => ("RSA", Some(2048)),
        KeyType::Rsa3072 => ("RSA", Some(3072)),
        KeyType::Rsa4096 => ("RSA", Some(4096)),
        KeyType::EcdsaP256 => ("ECDSA", Some(256)),
        KeyType::EcdsaP384 => ("ECDSA", Some(384)),
        KeyType::Ed25519 => ("Ed25519", None),
    };
    PrivateKey {
        algorithm,
        size,
        rotation_policy: "Always",
        encoding: "PKCS8",
    }
}

/// The Certificate for a leaf of `role`, written to `secret_name`, signed by `issuer`.
pub fn certificate_spec(
    mesh: &Mesh,
    role: Role,
    secret_name: &str,
    issuer: &IssuerRef,
) -> CertificateSpec {
    let (common_name, validity) = match role {
        Role::Client => (&mesh.cluster_a.client_name, mesh.cluster_a.validity.0),
        Role::Server => (&mesh.cluster_b.server_name, mesh.cluster_b.validity.0),
    };
    let (mut dns_names, mut uris, mut ip_addresses, mut email_addresses) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for san in leaf_sans(mesh, role) {
        // The same reading of a SAN as gen's own leaves (mesh validation has checked them).
        match san_type(&san) {
            Ok(rcgen::SanType::URI(_)) => uris.push(san),
            Ok(rcgen::SanType::IpAddress(_)) => ip_addresses.push(san),
            Ok(rcgen::SanType::Rfc822Name(_)) => email_addresses.push(san),
            _ => dns_names.push(san),
        }
    }
    let mut usages = vec!["digital signature"];
    if mesh.key_type.is_rsa() {
        usages.push("key encipherment");
    }
    usages.push(match role {
        Role::Client => "client auth",
        Role::Server => "server auth",
    });
    CertificateSpec {
        secret_name: secret_name.to_owned(),
        common_name: common_name.clone(),
        dns_names,
        uris,
        ip_addresses,
        email_addresses,
        usages,
        duration: go_duration(validity),
        renew_before: go_duration(validity / 3),
        private_key: private_key(mesh.key_type),
        issuer_ref: IssuerRefSpec {
            name: issuer.name.clone(),
            kind: issuer.kind.clone(),
            group: issuer.group.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(8_760 * 3600)), "8760h");
        assert_eq!(go_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(go_duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(go_duration(Duration::from_secs(0)), "0s");
    }
}
