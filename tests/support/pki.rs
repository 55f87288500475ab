//! A throwaway PKI for TLS tests: a CA made at test time, and a certificate for
//! `localhost`/127.0.0.1 signed by it, written as PEM files to a temporary directory that
//! lives as long as the value.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

pub struct TestPki {
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, &ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf certificate");
        let pki = TestPki {
            ca_pem: ca_cert.pem(),
            ca_path: dir.path().join("ca.pem"),
            cert_path: dir.path().join("tls.crt"),
            key_path: dir.path().join("tls.key"),
            _dir: dir,
        };
        std::fs::write(&pki.cert_path, leaf.pem()).expect("write cert");
        std::fs::write(&pki.key_path, leaf_key.serialize_pem()).expect("write key");
        std::fs::write(&pki.ca_path, &pki.ca_pem).expect("write CA");
        pki
    }

    /// A path of the PKI as text, for a command line or a config file.
    pub fn path(path: &std::path::Path) -> String {
        path.to_str().expect("UTF-8 temp path").to_owned()
    }
}
