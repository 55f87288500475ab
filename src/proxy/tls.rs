//! TLS files: the listener's certificate and key (checked at start so that a bad file is a
//! clear error, not a failure deep in the TLS library), and per-route upstream CAs.

use std::path::Path;
use std::sync::Arc;

use pingora::utils::tls::{WrappedX509, parse_x509};

/// Every certificate of a PEM file, as DER, each checked to parse as X.509.
fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut reader = bytes.as_slice();
    let mut certificates = Vec::new();
    for item in rustls_pemfile::certs(&mut reader) {
        let der = item.map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("{}: not an X.509 certificate: {e}", path.display()))?;
        certificates.push(der.as_ref().to_vec());
    }
    if certificates.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certificates)
}

/// Loads an `upstream_ca` file. With it, the route's https upstreams are verified against
/// these CAs only (see README: a private CA route gains nothing from the public roots).
pub fn load_ca(path: &Path) -> Result<Arc<[WrappedX509]>, String> {
    // `parse_x509` panics on bad DER; `read_certificates` has already parsed each one.
    Ok(read_certificates(path)?
        .into_iter()
        .map(|der| WrappedX509::new(der, parse_x509))
        .collect())
}

/// Checks the listener's certificate chain and private key before the server starts.
pub fn check_listener_files(cert: &Path, key: &Path) -> Result<(), String> {
    read_certificates(cert)?;
    let bytes = std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    match rustls_pemfile::private_key(&mut bytes.as_slice()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{}: no PEM private key in the file", key.display())),
        Err(e) => Err(format!("{}: not a PEM private key: {e}", key.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        assert!(load_ca(&garbage).is_err());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        assert!(load_ca(&empty).is_err());
        assert!(load_ca(&dir.path().join("missing.pem")).is_err());
        assert!(check_listener_files(&empty, &empty).is_err());
    }
}
