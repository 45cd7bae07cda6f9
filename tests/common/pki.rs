//! Certificates for tests, made with rcgen: a CA and leaves it signs.

use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A test certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate in PEM, for trust stores and --cafile.
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A leaf certificate for `localhost` and 127.0.0.1 with common name `cn`: (cert, key) PEM.
    pub fn leaf(&self, cn: &str) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}
