//! Why a peer was allowed or denied: the stable codes that logs, counters, reply bodies and
//! audits carry. A floor below the policy, so the checks that produce reasons (the client
//! profile among them) need not import the policy.

use serde::{Deserialize, Serialize};

/// Why a peer was allowed or denied. `code()` is what logs, counters and reply bodies carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Every check passed.
    Allowed,
    /// The connection carries no client certificate.
    NoPeerCertificate,
    /// The forwarded client certificate header does not match the connection's certificate.
    XfccMismatch,
    /// The certificate is not parsable DER, or its SAN extension is malformed.
    UnparsableCertificate,
    /// No trusted issuer's subject equals the leaf's issuer name.
    UntrustedIssuer,
    /// The leaf's authority key identifier differs from the issuer's subject key identifier.
    IssuerKeyIdMismatch,
    /// The leaf is signed with an algorithm the filter does not verify.
    UnsupportedSignatureAlgorithm,
    /// The leaf's signature does not verify under the trusted issuer's key.
    BadSignature,
    /// The leaf is a CA certificate (basicConstraints CA:true).
    LeafIsCa,
    /// The leaf's key usages do not allow TLS client authentication.
    NotClientAuth,
    /// The leaf has a critical extension the filter does not read.
    UnknownCriticalExtension,
    /// The leaf's RSA key has fewer than 2048 bits.
    WeakKey,
    /// A name of the leaf is outside its issuer's nameConstraints.
    OutsideNameConstraints,
    /// Before notBefore.
    NotYetValid,
    /// After notAfter.
    Expired,
    /// The issuer that signed the leaf, or a CA above it, is outside its validity window.
    IssuerExpired,
    /// The leaf is on its issuer's CRL, or a CA above it is on its parent's.
    Revoked,
    /// The serial number is in `deniedSerials`.
    DeniedSerial,
    /// The fingerprint is in `deniedFingerprints`.
    DeniedFingerprint,
    /// No SAN matches the allow-list for the authority (nor the subject `allowedSubjects`).
    SanNotAllowed,
    /// A SAN of the leaf is outside the `scope` of the issuer that signed it, or only its
    /// subject matched under a scoped issuer.
    OutsideIssuerScope,
    /// The authority has no `hosts` entry and there is no top-level `allowedSans`.
    NoRuleForHost,
    /// The request's route does not admit its method or the peer, or no route matches a path
    /// under `routesOnly`.
    RouteNotAllowed,
    /// The request path is not in the canonical spelling routes are matched in.
    UnnormalizedPath,
    /// The proxy could not tell the filter what it needs (a failed host call): fail closed.
    ProxyError,
}

impl Reason {
    /// Every reason, for defining counters up front.
    pub const ALL: [Reason; 25] = [
        Reason::Allowed,
        Reason::NoPeerCertificate,
        Reason::XfccMismatch,
        Reason::UnparsableCertificate,
        Reason::UntrustedIssuer,
        Reason::IssuerKeyIdMismatch,
        Reason::UnsupportedSignatureAlgorithm,
        Reason::BadSignature,
        Reason::LeafIsCa,
        Reason::NotClientAuth,
        Reason::UnknownCriticalExtension,
        Reason::WeakKey,
        Reason::OutsideNameConstraints,
        Reason::NotYetValid,
        Reason::Expired,
        Reason::IssuerExpired,
        Reason::Revoked,
        Reason::DeniedSerial,
        Reason::DeniedFingerprint,
        Reason::SanNotAllowed,
        Reason::OutsideIssuerScope,
        Reason::NoRuleForHost,
        Reason::RouteNotAllowed,
        Reason::UnnormalizedPath,
        Reason::ProxyError,
    ];

    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::NoPeerCertificate => "no_peer_certificate",
            Reason::XfccMismatch => "xfcc_mismatch",
            Reason::UnparsableCertificate => "unparsable_certificate",
            Reason::UntrustedIssuer => "untrusted_issuer",
            Reason::IssuerKeyIdMismatch => "issuer_key_id_mismatch",
            Reason::UnsupportedSignatureAlgorithm => "unsupported_signature_algorithm",
            Reason::BadSignature => "bad_signature",
            Reason::LeafIsCa => "leaf_is_ca",
            Reason::NotClientAuth => "not_client_auth",
            Reason::UnknownCriticalExtension => "unknown_critical_extension",
            Reason::WeakKey => "weak_key",
            Reason::OutsideNameConstraints => "outside_name_constraints",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Expired => "expired",
            Reason::IssuerExpired => "issuer_expired",
            Reason::Revoked => "revoked",
            Reason::DeniedSerial => "denied_serial",
            Reason::DeniedFingerprint => "denied_fingerprint",
            Reason::SanNotAllowed => "san_not_allowed",
            Reason::OutsideIssuerScope => "outside_issuer_scope",
            Reason::NoRuleForHost => "no_rule_for_host",
            Reason::RouteNotAllowed => "route_not_allowed",
            Reason::UnnormalizedPath => "unnormalized_path",
            Reason::ProxyError => "proxy_error",
        }
    }

    /// A sentence for people (audit reports).
    pub fn explain(self) -> &'static str {
        match self {
            Reason::Allowed => "every check passed",
            Reason::NoPeerCertificate => "the connection presented no client certificate",
            Reason::XfccMismatch => {
                "the x-forwarded-client-cert header does not carry the connection's certificate"
            }
            Reason::UnparsableCertificate => "the certificate is not valid X.509 DER",
            Reason::UntrustedIssuer => "the issuer name is not the subject of any trusted issuer",
            Reason::IssuerKeyIdMismatch => {
                "the authority key identifier does not match the trusted issuer's key"
            }
            Reason::UnsupportedSignatureAlgorithm => {
                "the signature algorithm is not supported (RSA PKCS#1 v1.5, ECDSA P-256/P-384, Ed25519)"
            }
            Reason::BadSignature => {
                "the signature does not verify under the trusted issuer's key (a different CA with the same name?)"
            }
            Reason::LeafIsCa => "the certificate is a CA certificate, not a client's",
            Reason::NotClientAuth => {
                "the certificate's key usages do not allow TLS client authentication (a server certificate?)"
            }
            Reason::UnknownCriticalExtension => {
                "the certificate has a critical extension the filter does not understand"
            }
            Reason::WeakKey => "the certificate's RSA key is shorter than 2048 bits",
            Reason::OutsideNameConstraints => {
                "a name of the certificate is outside its issuer's name constraints"
            }
            Reason::NotYetValid => "the certificate is not valid yet (notBefore is in the future)",
            Reason::Expired => "the certificate has expired (notAfter is in the past)",
            Reason::IssuerExpired => {
                "the trusted issuer that signed the certificate, or a CA above it, is outside its validity period"
            }
            Reason::Revoked => {
                "the certificate, or a CA above it, is on a certificate revocation list"
            }
            Reason::DeniedSerial => "the serial number is on the deny list",
            Reason::DeniedFingerprint => "the fingerprint is on the deny list",
            Reason::SanNotAllowed => {
                "no SAN matches the allowed patterns for this authority, nor the subject an allowed subject"
            }
            Reason::OutsideIssuerScope => {
                "a name of the certificate is outside the scope of the issuer that signed it (a scope bounds every SAN, and a subject never passes a scoped issuer)"
            }
            Reason::NoRuleForHost => "no rule covers this authority",
            Reason::RouteNotAllowed => {
                "the route for this path does not admit the method or the peer (or no route matches and the host takes routes only)"
            }
            Reason::UnnormalizedPath => {
                "the path holds a dot-segment, an encoded slash or backslash, a needless percent-encoding, a double slash or a byte RFC 3986 keeps out of paths: it has other spellings, so no route is guessed for it"
            }
            Reason::ProxyError => "the proxy failed to provide the connection's details",
        }
    }
}
