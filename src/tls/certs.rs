//! Certificates and keys from PEM files: read, checked (the key matches,
//! the dates are current), and the host names each certificate serves.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A certificate chain with its key, ready to serve.
#[derive(Debug)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// Lower-case DNS names from the leaf's subjectAltName (or its CN when
    /// it has none); wildcards kept as `*.example.com`.
    pub names: Vec<String>,
    /// Problems worth a warning but not a refusal (expired, not yet valid).
    pub warnings: Vec<String>,
}

/// Every certificate in a PEM file, in order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&bytes) {
        match item {
            Ok(c) => certs.push(c),
            Err(e) => return Err(format!("{}: bad PEM: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE in the file", path.display()));
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads a chain and its private key, and checks that they belong together.
/// Errors name the file at fault.
pub fn load_pair(cert: &Path, key: &Path) -> Result<LoadedCert, (KeyOrCert, String)> {
    let chain = load_certs(cert).map_err(|e| (KeyOrCert::Cert, e))?;
    let key_bytes = read(key).map_err(|e| (KeyOrCert::Key, e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        (
            KeyOrCert::Key,
            format!("{}: no usable private key ({e})", key.display()),
        )
    })?;
    let signing = super::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| (KeyOrCert::Key, format!("{}: {e}", key.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        // The check is not available for every key type; rustls then
        // cannot tell, and neither can we before a handshake.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err((
                KeyOrCert::Key,
                format!(
                    "{} does not match the certificate in {}",
                    key.display(),
                    cert.display()
                ),
            ));
        }
    }
    let (names, warnings) = describe(&certified.cert[0], cert)?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        warnings,
    })
}

/// Which of the two files a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrCert {
    Key,
    Cert,
}

/// The names a leaf certificate serves, and date warnings.
fn describe(
    leaf: &CertificateDer<'_>,
    path: &Path,
) -> Result<(Vec<String>, Vec<String>), (KeyOrCert, String)> {
    let (_, x509) = X509Certificate::from_der(leaf).map_err(|e| {
        (
            KeyOrCert::Cert,
            format!("{}: cannot parse the certificate: {e}", path.display()),
        )
    })?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in x509.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    let mut warnings = Vec::new();
    let validity = x509.validity();
    let now = x509_parser::time::ASN1Time::now();
    if validity.not_after < now {
        warnings.push(format!(
            "{}: the certificate expired on {}",
            path.display(),
            validity.not_after
        ));
    } else if now < validity.not_before {
        warnings.push(format!(
            "{}: the certificate is not valid before {}",
            path.display(),
            validity.not_before
        ));
    }
    Ok((names, warnings))
}
