//! What the policy trusts: `trustedIssuers` (the CAs that sign peers' leaves, each optionally
//! scoped to some names), `trustAnchors` (the roots those issuers must chain to) and `crls`
//! (revocations, each signed by one of them). Everything here is checked when the
//! configuration is compiled; what depends on the time (validity windows, a CRL's
//! nextUpdate) is kept for each decision.

use std::collections::HashSet;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    Oid, OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_CRL_NUMBER, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_INVALIDITY_DATE,
    OID_X509_EXT_KEY_USAGE, OID_X509_EXT_NAME_CONSTRAINTS, OID_X509_EXT_REASON_CODE,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::constraints::NameConstraints;
use crate::pattern::SanAllowList;
use crate::peer::{fingerprint, normalize_serial};
use crate::signature::{scheme_of, verify, IssuerKey, KeyError};
use crate::verifier::Verifier;

/// How deep a chain from a trusted issuer to an anchor may be (CAs above the issuer).
const MAX_CHAIN_DEPTH: usize = 8;

/// Why `trustedIssuers`, `trustAnchors` or `crls` cannot be used. Every variant names the
/// entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// An entry holds no PEM certificate (or CRL).
    #[error("{field}: not a PEM {what}: {detail}")]
    NotPem {
        /// `trustedIssuers[0]`, `trustAnchors[1]`, `crls[2]`.
        field: String,
        /// `certificate` or `CRL`.
        what: &'static str,
        /// What the PEM reader said.
        detail: String,
    },
    /// A PEM block is not a parsable X.509 certificate.
    #[error("{field}: certificate does not parse: {detail}")]
    Unparsable {
        /// The entry.
        field: String,
        /// What the parser said.
        detail: String,
    },
    /// A certificate lacks basicConstraints CA:true.
    #[error("{field}: {subject:?} is not a CA certificate (basicConstraints CA:true is required)")]
    NotCa {
        /// The entry.
        field: String,
        /// The certificate's subject.
        subject: String,
    },
    /// A CA's keyUsage leaves out keyCertSign: its key may not sign certificates.
    #[error("{field}: {subject:?} has a keyUsage without keyCertSign: its key may not sign certificates")]
    NoKeyCertSign {
        /// The entry.
        field: String,
        /// The certificate's subject.
        subject: String,
    },
    /// A CA carries a critical extension the filter does not process (RFC 5280 §4.2: a
    /// certificate with one must be rejected).
    #[error("{field}: {subject:?} has the critical extension {oid}, which the filter does not process (it processes basicConstraints, keyUsage, extendedKeyUsage, nameConstraints and the key identifiers); RFC 5280 requires refusing such a CA")]
    UnprocessedCriticalExtension {
        /// The entry.
        field: String,
        /// The certificate's subject.
        subject: String,
        /// The extension's OID, dotted.
        oid: String,
    },
    /// A CA's extendedKeyUsage leaves out clientAuth: no certificate under it is a client's.
    #[error("{field}: {subject:?} has an extendedKeyUsage without clientAuth (or anyExtendedKeyUsage): no certificate under it may authenticate a TLS client")]
    NotForClients {
        /// The entry.
        field: String,
        /// The certificate's subject.
        subject: String,
    },
    /// The same CA (subject and key) is listed twice in `trustedIssuers`: which entry's scope
    /// would apply must not depend on the order.
    #[error("{first} and {second} are the same CA ({subject:?}, the same key): list it once, with the scope it should have")]
    ListedTwice {
        /// The first entry.
        first: String,
        /// The entry that repeats it.
        second: String,
        /// The CA's subject.
        subject: String,
    },
    /// A CA's key cannot be used to verify signatures.
    #[error("{field}: {source}")]
    Key {
        /// The entry.
        field: String,
        /// The key problem.
        source: KeyError,
    },
    /// A CA's nameConstraints cannot be applied.
    #[error("{field}: {detail}")]
    NameConstraints {
        /// The entry.
        field: String,
        /// What is wrong with the extension.
        detail: String,
    },
    /// A trusted issuer does not chain to `trustAnchors`.
    #[error("{field}: {subject:?} does not chain to trustAnchors: {why}")]
    Chain {
        /// `trustedIssuers[i]`.
        field: String,
        /// The issuer's subject.
        subject: String,
        /// What is missing or wrong.
        why: String,
    },
    /// A `scope` pattern is malformed, or the list is empty.
    #[error("{field}: {why}")]
    Scope {
        /// `trustedIssuers[i].scope[j]`.
        field: String,
        /// What is wrong.
        why: String,
    },
    /// A CRL that does not parse, is not signed by a trusted issuer or anchor, or has a
    /// critical extension the filter does not read.
    #[error("{field}: {why}")]
    Crl {
        /// `crls[i]`.
        field: String,
        /// What is wrong.
        why: String,
    },
}

/// One CA of a trusted issuer's chain: the issuer itself first, its anchor last.
#[derive(Debug, Clone)]
pub(crate) struct CaLink {
    /// Where it is configured: `trustedIssuers[0]` or `trustAnchors[1]`.
    pub(crate) label: String,
    /// Its subject, for people.
    pub(crate) subject: String,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    /// Its nameConstraints, applied to the leaves below it.
    pub(crate) name_constraints: Option<NameConstraints>,
}

/// One trusted issuer, ready to verify signatures.
#[derive(Debug, Clone)]
pub(crate) struct TrustedIssuer {
    /// Position in `trustedIssuers` (an entry may hold several certificates).
    pub(crate) index: usize,
    /// The subject, for people.
    pub(crate) subject: String,
    pub(crate) subject_der: Vec<u8>,
    pub(crate) key_id: Option<Vec<u8>>,
    pub(crate) key: IssuerKey,
    /// The names it may vouch for (`scope`); `None`: any.
    pub(crate) scope: Option<SanAllowList>,
    /// Itself, then each CA up to the anchor (only itself without `trustAnchors`).
    pub(crate) chain: Vec<CaLink>,
    /// The CRLs it signed (indexes into [`Trust::crls`]): its leaves' revocations.
    pub(crate) own_crls: Vec<usize>,
    /// A CA of the chain on its parent's CRL: then every leaf under it is revoked.
    pub(crate) revoked_link: Option<String>,
    /// The CRLs a decision on its leaves consults (its own and those its chain was checked
    /// against), for staleness.
    pub(crate) consulted_crls: Vec<usize>,
}

impl TrustedIssuer {
    /// The window inside which the whole chain is valid.
    pub(crate) fn window(&self) -> (i64, i64) {
        self.chain
            .iter()
            .fold((i64::MIN, i64::MAX), |(from, to), link| {
                (from.max(link.not_before), to.min(link.not_after))
            })
    }
}

/// One compiled CRL.
#[derive(Debug, Clone)]
pub(crate) struct Crl {
    /// Position in `crls`.
    pub(crate) index: usize,
    /// The CA that signed it (`trustedIssuers[0]`, `trustAnchors[0]`).
    pub(crate) signer: String,
    /// Revoked serials, without leading zero bytes.
    pub(crate) revoked: HashSet<Vec<u8>>,
    /// nextUpdate, Unix seconds; past it the CRL is stale (still enforced).
    pub(crate) next_update: Option<i64>,
}

impl Crl {
    /// Whether the serial (DER content bytes) is on it.
    pub(crate) fn lists(&self, raw_serial: &[u8]) -> bool {
        self.revoked.contains(&normalize_serial(raw_serial))
    }
}

/// What the policy trusts.
#[derive(Debug, Clone)]
pub(crate) struct Trust {
    pub(crate) issuers: Vec<TrustedIssuer>,
    pub(crate) anchor_count: usize,
    pub(crate) crls: Vec<Crl>,
}

/// A parsed CA certificate and where it came from.
struct Ca<'a> {
    label: String,
    /// `Some(i)` for `trustedIssuers[i]`.
    issuer_index: Option<usize>,
    anchor: bool,
    scope: Option<&'a [String]>,
    der: &'a [u8],
    cert: X509Certificate<'a>,
    key: IssuerKey,
}

impl Ca<'_> {
    /// Identity for CRL signing: subject and key.
    fn identity(&self) -> [u8; 32] {
        let mut bytes = self.cert.subject().as_raw().to_vec();
        bytes.extend_from_slice(self.cert.public_key().raw);
        fingerprint(&bytes)
    }

    fn key_id(&self) -> Option<&[u8]> {
        self.cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
                _ => None,
            })
    }

    fn path_len(&self) -> Option<u32> {
        self.cert
            .basic_constraints()
            .ok()
            .flatten()
            .and_then(|bc| bc.value.path_len_constraint)
    }

    fn link(&self) -> Result<CaLink, TrustError> {
        let validity = self.cert.validity();
        Ok(CaLink {
            label: self.label.clone(),
            subject: self.cert.subject().to_string(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            name_constraints: NameConstraints::of_issuer(&self.cert).map_err(|detail| {
                TrustError::NameConstraints {
                    field: self.label.clone(),
                    detail,
                }
            })?,
        })
    }
}

/// The DER blocks of one PEM entry with `label` (`CERTIFICATE`, `X509 CRL`).
fn pem_blocks(field: &str, pem: &str, label: &str) -> Result<Vec<Vec<u8>>, TrustError> {
    let not_pem = |detail: String| TrustError::NotPem {
        field: field.to_owned(),
        what: if label == "X509 CRL" {
            "CRL"
        } else {
            "certificate"
        },
        detail,
    };
    let mut blocks = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| not_pem(e.to_string()))?;
        if block.label != label {
            return Err(not_pem(format!(
                "found a {:?} block where {label:?} was expected",
                block.label
            )));
        }
        blocks.push(block.contents);
    }
    if blocks.is_empty() {
        return Err(not_pem(format!("no -----BEGIN {label}----- block")));
    }
    Ok(blocks)
}

fn parse_ca<'a>(
    label: String,
    der: &'a [u8],
    issuer_index: Option<usize>,
    scope: Option<&'a [String]>,
) -> Result<Ca<'a>, TrustError> {
    let unparsable = |detail: String| TrustError::Unparsable {
        field: label.clone(),
        detail,
    };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| unparsable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(unparsable("trailing bytes after the certificate".into()));
    }
    if !cert.is_ca() {
        return Err(TrustError::NotCa {
            field: label,
            subject: cert.subject().to_string(),
        });
    }
    if let Ok(Some(ku)) = cert.key_usage() {
        if !ku.value.key_cert_sign() {
            return Err(TrustError::NoKeyCertSign {
                field: label,
                subject: cert.subject().to_string(),
            });
        }
    }
    check_ca_extensions(&label, &cert)?;
    let key = IssuerKey::from_spki(cert.public_key()).map_err(|source| TrustError::Key {
        field: label.clone(),
        source,
    })?;
    Ok(Ca {
        label,
        issuer_index,
        anchor: issuer_index.is_none(),
        scope,
        der,
        cert,
        key,
    })
}

/// The extensions a CA may mark critical: those the filter reads when it builds a chain and
/// applies it (nameConstraints to the leaves, extendedKeyUsage below).
fn ca_extension_is_processed(oid: &Oid<'_>) -> bool {
    [
        OID_X509_EXT_BASIC_CONSTRAINTS,
        OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_EXTENDED_KEY_USAGE,
        OID_X509_EXT_NAME_CONSTRAINTS,
        OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
    ]
    .contains(oid)
}

/// A CA is refused when it has a critical extension the filter does not process (policy
/// constraints requiring an explicit policy, say), or an extendedKeyUsage that rules out TLS
/// clients below it (as path validation nests extended key usages).
fn check_ca_extensions(label: &str, cert: &X509Certificate<'_>) -> Result<(), TrustError> {
    if let Some(ext) = cert
        .extensions()
        .iter()
        .find(|ext| ext.critical && !ca_extension_is_processed(&ext.oid))
    {
        return Err(TrustError::UnprocessedCriticalExtension {
            field: label.to_owned(),
            subject: cert.subject().to_string(),
            oid: ext.oid.to_id_string(),
        });
    }
    match cert.extended_key_usage() {
        Ok(Some(eku)) if !eku.value.client_auth && !eku.value.any => {
            Err(TrustError::NotForClients {
                field: label.to_owned(),
                subject: cert.subject().to_string(),
            })
        }
        Ok(_) => Ok(()),
        Err(e) => Err(TrustError::Unparsable {
            field: label.to_owned(),
            detail: format!("extendedKeyUsage does not parse: {e}"),
        }),
    }
}

/// Whether `parent` signed `child` as a CA may: same name, compatible key identifiers, a
/// signature that verifies; `Err` says why not.
fn signed_by(child: &X509Certificate<'_>, parent: &Ca<'_>) -> Result<(), String> {
    if child.issuer().as_raw() != parent.cert.subject().as_raw() {
        return Err("another issuer name".into());
    }
    let aki = child
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0)
            }
            _ => None,
        });
    if let (Some(aki), Some(ski)) = (aki, parent.key_id()) {
        if aki != ski {
            return Err("its authority key identifier is not the subject key identifier".into());
        }
    }
    Verifier::InProcess
        .verify_leaf(child, &parent.key)
        .map_err(|failure| format!("the signature does not verify ({failure:?})"))
}

/// The chain from `start` (a trusted issuer) up to an anchor, as indexes into `cas`; `Err`
/// says how far it got.
fn chain_to_anchor(cas: &[Ca<'_>], start: usize) -> Result<Vec<usize>, String> {
    let mut chain = vec![start];
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let mut current = start;
    loop {
        let here = cas.get(current).ok_or("internal: no such CA")?;
        seen.insert(here.der);
        if here.anchor || cas.iter().any(|c| c.anchor && c.der == here.der) {
            return Ok(chain);
        }
        if chain.len() > MAX_CHAIN_DEPTH {
            return Err(format!("more than {MAX_CHAIN_DEPTH} CAs above it"));
        }
        // CAs below `current` on the chain, not counting the issuer's leaves.
        let below = chain.len() - 1;
        let mut tried = Vec::new();
        let parent = cas.iter().enumerate().find_map(|(i, candidate)| {
            if seen.contains(candidate.der) {
                return None;
            }
            match signed_by(&here.cert, candidate) {
                Err(why) => {
                    if candidate.cert.subject().as_raw() == here.cert.issuer().as_raw() {
                        tried.push(format!("{}: {why}", candidate.label));
                    }
                    None
                }
                Ok(()) => match candidate.path_len() {
                    Some(limit) if usize::try_from(limit).unwrap_or(usize::MAX) < below + 1 => {
                        tried.push(format!(
                            "{} signed it but its pathLenConstraint {limit} allows no {} CA(s) below it",
                            candidate.label,
                            below + 1
                        ));
                        None
                    }
                    _ => Some(i),
                },
            }
        });
        match parent {
            Some(i) => {
                chain.push(i);
                current = i;
            }
            None if tried.is_empty() => {
                return Err(format!(
                    "{} ({:?}) has no issuer among trustedIssuers and trustAnchors (its issuer is {:?})",
                    here.label,
                    here.cert.subject().to_string(),
                    here.cert.issuer().to_string()
                ))
            }
            None => return Err(tried.join("; ")),
        }
    }
}

/// The known CRL and CRL entry extensions; anything else critical refuses the CRL.
fn crl_extension_is_read(oid: &Oid<'_>) -> bool {
    [
        OID_X509_EXT_CRL_NUMBER,
        OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
        OID_X509_EXT_REASON_CODE,
        OID_X509_EXT_INVALIDITY_DATE,
    ]
    .contains(oid)
}

/// Compiles `trustedIssuers`, `trustAnchors` and `crls`.
pub(crate) fn compile_trust(
    trusted_issuers: &[crate::config::TrustedIssuerConfig],
    trust_anchors: &[String],
    crls: &[String],
    compile_scope: impl Fn(&str, &[String]) -> Result<SanAllowList, (String, String)>,
) -> Result<Trust, TrustError> {
    // Own every DER block first: the parsed certificates borrow them.
    let mut issuer_ders = Vec::new();
    for (index, entry) in trusted_issuers.iter().enumerate() {
        let field = format!("trustedIssuers[{index}]");
        issuer_ders.push(pem_blocks(&field, entry.pem(), "CERTIFICATE")?);
    }
    let mut anchor_ders = Vec::new();
    for (index, pem) in trust_anchors.iter().enumerate() {
        let field = format!("trustAnchors[{index}]");
        anchor_ders.push(pem_blocks(&field, pem, "CERTIFICATE")?);
    }
    let cas = configured_cas(trusted_issuers, &issuer_ders, &anchor_ders)?;
    let signed_crls = compile_crls(crls, &cas)?;
    let anchored = !trust_anchors.is_empty();
    let mut issuers = Vec::new();
    let mut on_a_chain = HashSet::new();
    for position in 0..cas.len() {
        if let Some((issuer, chain)) =
            compile_issuer(&cas, position, anchored, &signed_crls, &compile_scope)?
        {
            on_a_chain.extend(chain);
            issuers.push(issuer);
        }
    }
    check_crl_entries_take_effect(&cas, &signed_crls, &on_a_chain)?;
    Ok(Trust {
        issuers,
        anchor_count: anchor_ders.iter().map(Vec::len).sum(),
        crls: signed_crls.into_iter().map(|signed| signed.crl).collect(),
    })
}

/// Every configured CA, parsed and checked: the trusted issuers first (each listed once), then
/// the anchors.
fn configured_cas<'a>(
    trusted_issuers: &'a [crate::config::TrustedIssuerConfig],
    issuer_ders: &'a [Vec<Vec<u8>>],
    anchor_ders: &'a [Vec<Vec<u8>>],
) -> Result<Vec<Ca<'a>>, TrustError> {
    let mut cas = Vec::new();
    for (index, blocks) in issuer_ders.iter().enumerate() {
        let scope = trusted_issuers.get(index).and_then(|e| e.scope());
        for der in blocks {
            let label = format!("trustedIssuers[{index}]");
            cas.push(parse_ca(label, der, Some(index), scope)?);
        }
    }
    check_listed_once(&cas)?;
    for (index, blocks) in anchor_ders.iter().enumerate() {
        for der in blocks {
            cas.push(parse_ca(format!("trustAnchors[{index}]"), der, None, None)?);
        }
    }
    Ok(cas)
}

/// Every CRL of `crls`, each attributed to the configured CA that signed it.
fn compile_crls(crls: &[String], cas: &[Ca<'_>]) -> Result<Vec<SignedCrl>, TrustError> {
    let mut signed = Vec::new();
    for (index, pem) in crls.iter().enumerate() {
        for der in pem_blocks(&format!("crls[{index}]"), pem, "X509 CRL")? {
            signed.push(compile_crl(index, &der, cas)?);
        }
    }
    Ok(signed)
}

/// The configured CA at `position` as a trusted issuer (`None` for an anchor): its chain to an
/// anchor (itself alone without `trustAnchors`), what the CRLs say about it, its scope. Also
/// returns the chain's positions.
fn compile_issuer(
    cas: &[Ca<'_>],
    position: usize,
    anchored: bool,
    signed_crls: &[SignedCrl],
    compile_scope: &impl Fn(&str, &[String]) -> Result<SanAllowList, (String, String)>,
) -> Result<Option<(TrustedIssuer, Vec<usize>)>, TrustError> {
    let Some(ca) = cas.get(position) else {
        return Ok(None);
    };
    let Some(index) = ca.issuer_index else {
        return Ok(None);
    };
    let chain = if anchored {
        chain_to_anchor(cas, position).map_err(|why| TrustError::Chain {
            field: ca.label.clone(),
            subject: ca.cert.subject().to_string(),
            why,
        })?
    } else {
        vec![position]
    };
    let links = chain
        .iter()
        .filter_map(|&i| cas.get(i))
        .map(Ca::link)
        .collect::<Result<Vec<_>, _>>()?;
    let chain_revocation = revocations_of_chain(cas, &chain, signed_crls);
    let own_crls = crls_signed_by(cas, signed_crls, position);
    let mut consulted = chain_revocation.consulted;
    consulted.extend(own_crls.iter().copied());
    consulted.sort_unstable();
    consulted.dedup();
    let scope = ca
        .scope
        .map(|patterns| {
            compile_scope(&format!("{}.scope", ca.label), patterns)
                .map_err(|(field, why)| TrustError::Scope { field, why })
        })
        .transpose()?;
    let issuer = TrustedIssuer {
        index,
        subject: ca.cert.subject().to_string(),
        subject_der: ca.cert.subject().as_raw().to_vec(),
        key_id: ca.key_id().map(<[u8]>::to_vec),
        key: ca.key.clone(),
        scope,
        chain: links,
        own_crls,
        revoked_link: chain_revocation.revoked_link,
        consulted_crls: consulted,
    };
    Ok(Some((issuer, chain)))
}

/// The same CA twice in `trustedIssuers` (in two entries, or twice in one bundle) would make
/// its scope depend on which entry is tried first.
fn check_listed_once(cas: &[Ca<'_>]) -> Result<(), TrustError> {
    let mut seen: Vec<([u8; 32], String)> = Vec::new();
    for ca in cas.iter().filter(|ca| ca.issuer_index.is_some()) {
        let identity = ca.identity();
        if let Some((_, first)) = seen.iter().find(|(id, _)| *id == identity) {
            return Err(TrustError::ListedTwice {
                first: first.clone(),
                second: ca.label.clone(),
                subject: ca.cert.subject().to_string(),
            });
        }
        seen.push((identity, ca.label.clone()));
    }
    Ok(())
}

/// A compiled CRL and the position (in the configured CAs) of the CA that signed it.
struct SignedCrl {
    crl: Crl,
    signer: usize,
}

/// Parses one CRL, refuses what the filter cannot apply, and finds the configured CA that
/// signed it.
fn compile_crl(index: usize, der: &[u8], cas: &[Ca<'_>]) -> Result<SignedCrl, TrustError> {
    let bad = |why: String| TrustError::Crl {
        field: format!("crls[{index}]"),
        why,
    };
    let crl = match CertificateRevocationList::from_der(der) {
        Ok(([], crl)) => crl,
        Ok(_) => return Err(bad("trailing bytes after the CRL".into())),
        Err(e) => return Err(bad(format!("does not parse: {e}"))),
    };
    if let Some(ext) = crl
        .extensions()
        .iter()
        .find(|e| e.critical && !crl_extension_is_read(&e.oid))
    {
        return Err(bad(format!(
            "critical extension {} is not one the filter reads (delta and partitioned CRLs are not supported)",
            ext.oid.to_id_string()
        )));
    }
    if let Some(entry) = crl.iter_revoked_certificates().find(|r| {
        r.extensions()
            .iter()
            .any(|e| e.critical && !crl_extension_is_read(&e.oid))
    }) {
        return Err(bad(format!(
            "the entry for serial {} has a critical extension the filter does not read (indirect CRLs are not supported)",
            entry.raw_serial_as_string()
        )));
    }
    let scheme = scheme_of(&crl.signature_algorithm)
        .ok_or_else(|| bad("signed with an algorithm the filter does not verify".into()))?;
    let signer = cas
        .iter()
        .position(|ca| {
            ca.cert.subject().as_raw() == crl.issuer().as_raw()
                && verify(
                    &ca.key,
                    scheme,
                    crl.tbs_cert_list.as_ref(),
                    &crl.signature_value.data,
                )
                .is_ok()
        })
        .ok_or_else(|| {
            bad(format!(
                "issued by {:?}, and no trusted issuer or anchor of that name signed it",
                crl.issuer().to_string()
            ))
        })?;
    let label = cas
        .get(signer)
        .map_or_else(String::new, |ca| ca.label.clone());
    Ok(SignedCrl {
        crl: Crl {
            index,
            signer: label,
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| normalize_serial(r.raw_serial()))
                .collect(),
            next_update: crl.next_update().map(|t| t.timestamp()),
        },
        signer,
    })
}

/// The CRLs (indexes into the compiled list) signed by the CA at `position` or by the same CA
/// listed elsewhere (same subject and key).
fn crls_signed_by(cas: &[Ca<'_>], crls: &[SignedCrl], position: usize) -> Vec<usize> {
    let Some(ca) = cas.get(position) else {
        return Vec::new();
    };
    let identity = ca.identity();
    crls.iter()
        .enumerate()
        .filter(|(_, signed)| {
            cas.get(signed.signer)
                .is_some_and(|s| s.identity() == identity)
        })
        .map(|(i, _)| i)
        .collect()
}

/// What the CRLs say about the CAs of one chain.
struct ChainRevocation {
    /// The first CA of the chain found revoked, said for people.
    revoked_link: Option<String>,
    /// Every CRL consulted.
    consulted: Vec<usize>,
}

/// Each CA of a chain (the trusted issuer itself included, anchors or not) against the CRLs of
/// every configured CA that signed it: a CA that is revoked by whoever issued it is revoked,
/// whichever path the chain took and whether or not `trustAnchors` is set.
fn revocations_of_chain(cas: &[Ca<'_>], chain: &[usize], crls: &[SignedCrl]) -> ChainRevocation {
    let mut revocation = ChainRevocation {
        revoked_link: None,
        consulted: Vec::new(),
    };
    for child in chain.iter().filter_map(|&i| cas.get(i)) {
        for (crl_index, signed) in crls.iter().enumerate() {
            let Some(parent) = cas.get(signed.signer) else {
                continue;
            };
            if parent.identity() == child.identity() || signed_by(&child.cert, parent).is_err() {
                continue;
            }
            revocation.consulted.push(crl_index);
            if revocation.revoked_link.is_none() && signed.crl.lists(child.cert.raw_serial()) {
                revocation.revoked_link = Some(format!(
                    "{} ({:?}) is revoked on crls[{}], signed by {}",
                    child.label,
                    child.cert.subject().to_string(),
                    signed.crl.index,
                    parent.label
                ));
            }
        }
    }
    revocation
}

/// A CRL entry that names a configured CA must take effect: that CA is a trusted issuer or on
/// a trusted issuer's chain (where [`revocations_of_chain`] applies it), and it is not the
/// CRL's own signer (a CA cannot revoke itself on its own list). Anything else is refused
/// rather than left silently without effect.
fn check_crl_entries_take_effect(
    cas: &[Ca<'_>],
    crls: &[SignedCrl],
    on_a_chain: &HashSet<usize>,
) -> Result<(), TrustError> {
    for signed in crls {
        let Some(signer) = cas.get(signed.signer) else {
            continue;
        };
        let bad = |why: String| TrustError::Crl {
            field: format!("crls[{}]", signed.crl.index),
            why,
        };
        for (position, ca) in cas.iter().enumerate() {
            if !signed.crl.lists(ca.cert.raw_serial()) {
                continue;
            }
            if ca.identity() == signer.identity()
                && ca.cert.issuer().as_raw() == ca.cert.subject().as_raw()
            {
                return Err(bad(format!(
                    "lists the serial of its own signer {} ({:?}): a CA cannot revoke itself on its own CRL; remove it from trustedIssuers and trustAnchors instead",
                    ca.label,
                    ca.cert.subject().to_string()
                )));
            }
            if signed_by(&ca.cert, signer).is_ok() && !on_a_chain.contains(&position) {
                return Err(bad(format!(
                    "revokes {} ({:?}), which is on no trusted issuer's chain, so the entry would have no effect; remove that certificate from the configuration or the entry from the CRL",
                    ca.label,
                    ca.cert.subject().to_string()
                )));
            }
        }
    }
    Ok(())
}
