//! The sample server's own serving certificate: a self-signed CA and a
//! certificate it issues, generated in the cert dir on first start and reused
//! afterwards, so an APIService's caBundle (`<cert-dir>/ca.crt`) stays valid
//! across restarts. The serving certificate is re-issued when the wanted SANs
//! change.

use std::fs;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub struct Serving {
    pub cert: String,
    pub key: String,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn named(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

fn read_pair(dir: &Path, name: &str) -> Option<(String, String)> {
    let cert = fs::read_to_string(dir.join(format!("{name}.crt"))).ok()?;
    let key = fs::read_to_string(dir.join(format!("{name}.key"))).ok()?;
    Some((cert, key))
}

fn write_pair(dir: &Path, name: &str, cert: &str, key: &str) -> Result<(), String> {
    fs::write(dir.join(format!("{name}.crt")), cert).map_err(err)?;
    let key_path = dir.join(format!("{name}.key"));
    fs::write(&key_path, key).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

fn new_ca() -> Result<(String, String), String> {
    let key = KeyPair::generate().map_err(err)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = named("sample-apiserver-ca");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = p.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn new_serving(ca_cert: &str, ca_key: &str, sans: &[String]) -> Result<(String, String), String> {
    let issuer = Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key).map_err(err)?).map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = named("sample-apiserver");
    p.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s.clone().try_into().map(SanType::DnsName).map_err(err),
        })
        .collect::<Result<_, _>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &issuer).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Loads the CA and serving certificate from `dir`, creating what is missing.
pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Serving, String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let (ca_cert, ca_key) = match read_pair(dir, "ca") {
        Some(p) => p,
        None => {
            let (c, k) = new_ca()?;
            write_pair(dir, "ca", &c, &k)?;
            // Whatever the old CA signed is worthless now.
            let _ = fs::remove_file(dir.join("apiserver.crt"));
            (c, k)
        }
    };
    let sans_file = dir.join("apiserver.sans");
    let wanted = sans.join(",");
    let (cert, key) = match (read_pair(dir, "apiserver"), fs::read_to_string(&sans_file).ok()) {
        (Some(p), Some(s)) if s == wanted => p,
        _ => {
            let (c, k) = new_serving(&ca_cert, &ca_key, sans)?;
            write_pair(dir, "apiserver", &c, &k)?;
            fs::write(&sans_file, &wanted).map_err(err)?;
            (c, k)
        }
    };
    Ok(Serving { cert, key })
}
