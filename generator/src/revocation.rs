//! Certificate revocation lists of the generated CAs: `certs/<ca>-crl.pem`, read back on
//! every run so revocations are kept, and re-signed by `peergate revoke`.

use std::time::SystemTime;

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::X509Version;

use crate::certs::{CertAndKey, CertError};

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The serial, big-endian without leading zero bytes.
    pub serial: Vec<u8>,
    /// When it was revoked, Unix seconds.
    pub revoked_at: i64,
    /// Why, when given.
    pub reason: Option<Reason>,
}

/// The reasons RFC 5280 §5.3.1 defines (certificateHold and removeFromCRL aside: a
/// revocation here is final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "camelCase")]
pub enum Reason {
    /// unspecified
    Unspecified,
    /// keyCompromise
    KeyCompromise,
    /// cACompromise
    CaCompromise,
    /// affiliationChanged
    AffiliationChanged,
    /// superseded
    Superseded,
    /// cessationOfOperation
    CessationOfOperation,
    /// privilegeWithdrawn
    PrivilegeWithdrawn,
}

impl Reason {
    fn to_rcgen(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::CaCompromise => RevocationReason::CaCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Reason::Unspecified,
            1 => Reason::KeyCompromise,
            2 => Reason::CaCompromise,
            3 => Reason::AffiliationChanged,
            4 => Reason::Superseded,
            5 => Reason::CessationOfOperation,
            9 => Reason::PrivilegeWithdrawn,
            _ => return None,
        })
    }
}

/// Why a CRL file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CrlError(pub String);

/// The revocations in a CRL, if `ca_cert` signed it (checked by the filter's own compile, so
/// what the generator keeps is what the gateway enforces).
pub fn read_crl(pem: &str, ca_cert: &str) -> Result<Vec<Revocation>, CrlError> {
    peergate_filter::compile(&peergate_filter::PluginConfig {
        trusted_issuers: vec![ca_cert.to_owned().into()],
        allowed_sans: Some(vec!["spiffe://unused/*".into()]),
        crls: vec![pem.to_owned()],
        ..Default::default()
    })
    .map_err(|e| CrlError(format!("not a CRL of its CA: {e}")))?;
    let block = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .ok_or_else(|| CrlError("no PEM block".into()))?
        .map_err(|e| CrlError(e.to_string()))?;
    let (_, crl) = CertificateRevocationList::from_der(&block.contents)
        .map_err(|e| CrlError(e.to_string()))?;
    if crl.version() != Some(X509Version::V2) {
        return Err(CrlError("not a version 2 CRL".into()));
    }
    Ok(crl
        .iter_revoked_certificates()
        .map(|entry| Revocation {
            serial: peergate_filter::peer::normalize_serial(entry.raw_serial()),
            revoked_at: entry.revocation_date.timestamp(),
            reason: entry
                .reason_code()
                .and_then(|(_, code)| Reason::from_code(code.0)),
        })
        .collect())
}

/// A CRL of `ca` listing `revocations`, valid from now until the CA itself expires: a CRL past
/// its nextUpdate makes Envoy refuse every handshake (`peergate revoke` re-signs it anyway on
/// every change).
pub fn sign_crl(
    ca: &CertAndKey,
    revocations: &[Revocation],
    now: SystemTime,
) -> Result<String, CertError> {
    let crypto = |what: &str| {
        let what = what.to_owned();
        move |e: rcgen::Error| CertError::Crypto {
            what: what.clone(),
            message: e.to_string(),
        }
    };
    let key = KeyPair::from_pem(&ca.key).map_err(crypto("CA key"))?;
    let der =
        peergate_filter::xfcc::certificate_der_from_pem(ca.cert.as_bytes()).ok_or_else(|| {
            CertError::Crypto {
                what: "CA certificate".into(),
                message: "not PEM".into(),
            }
        })?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).map_err(|e| {
        CertError::Crypto {
            what: "CA certificate".into(),
            message: e.to_string(),
        }
    })?;
    let ski = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(id.0.to_vec())
            }
            _ => None,
        });
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .map_err(|e| CertError::Crypto {
            what: "CA certificate".into(),
            message: e.to_string(),
        })?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, key).map_err(crypto("CA certificate"))?;
    let this_update = OffsetDateTime::from(now)
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::from(now));
    let mut revoked_certs = Vec::new();
    for r in revocations {
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&r.serial),
            revocation_time: OffsetDateTime::from_unix_timestamp(r.revoked_at).map_err(|e| {
                CertError::Crypto {
                    what: "revocation time".into(),
                    message: e.to_string(),
                }
            })?,
            reason_code: r.reason.map(Reason::to_rcgen),
            invalidity_date: None,
        });
    }
    // CRL numbers must grow: the signing time in seconds does.
    let number = u64::try_from(this_update.unix_timestamp()).unwrap_or(0);
    let params = CertificateRevocationListParams {
        this_update,
        next_update: not_after.max(this_update + time::Duration::days(1)),
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: match ski {
            Some(id) => KeyIdMethod::PreSpecified(id),
            None => KeyIdMethod::Sha256,
        },
    };
    let crl = params.signed_by(&issuer).map_err(crypto("CRL"))?;
    crl.pem().map_err(crypto("CRL"))
}
