//! Certificates for servers that make their own: a CA, serving and client
//! certificates it issues (rcgen), and the `<name>.crt`/`<name>.key` files a
//! data directory keeps them in (the key readable by its owner only). They
//! carry the extensions Go's x509 gives kube-apiserver's and kubeadm's
//! certificates, which strict verifiers (`openssl verify -x509_strict`)
//! require: key usages, critical basic constraints, a subject key identifier,
//! and on every issued certificate the issuer's key identifier.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its key, as PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    for o in orgs {
        d.push(DnType::OrganizationName, *o);
    }
    d
}

fn validity(params: &mut CertificateParams, years: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365 * years);
}

pub fn new_ca(cn: &str) -> Result<Pem, String> {
    let key = KeyPair::generate().map_err(err)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn, &[]);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut p, 10);
    let cert = p.self_signed(&key).map_err(err)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

fn issue(ca: &Pem, mut params: CertificateParams) -> Result<Pem, String> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(err)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    validity(&mut params, 5);
    // Basic constraints saying "not a CA", which also brings the subject key
    // identifier; the authority key identifier is the CA's own.
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// A serving certificate for `sans` (IP addresses or DNS names).
pub fn serving_cert(ca: &Pem, cn: &str, sans: &[String]) -> Result<Pem, String> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn, &[]);
    p.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s.clone().try_into().map(SanType::DnsName).map_err(err),
        })
        .collect::<Result<_, _>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    issue(ca, p)
}

/// A client certificate: CN is the user, each O a group.
pub fn client_cert(ca: &Pem, user: &str, groups: &[&str]) -> Result<Pem, String> {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(user, groups);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    issue(ca, p)
}

pub fn read_pair(dir: &Path, name: &str) -> Option<Pem> {
    let cert = fs::read_to_string(dir.join(format!("{name}.crt"))).ok()?;
    let key = fs::read_to_string(dir.join(format!("{name}.key"))).ok()?;
    Some(Pem { cert, key })
}

pub fn write_pair(dir: &Path, name: &str, pem: &Pem) -> Result<(), String> {
    fs::write(dir.join(format!("{name}.crt")), &pem.cert).map_err(err)?;
    let key_path: PathBuf = dir.join(format!("{name}.key"));
    write_private(&key_path, pem.key.as_bytes()).map_err(err)
}

/// Writes `data` to `path` (created or replaced) readable by its owner only,
/// from its first byte on: a key or a kubeconfig holding one is never
/// readable by others, not even while it is being written.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut open = fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut file = open.open(path)?;
    // The mode applies only to a file this call creates.
    restrict(path, 0o600)?;
    file.write_all(data)
}

/// Sets `path`'s permission bits to `mode` (owner-only modes for private
/// files and directories); nothing on systems without them.
pub fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// The pair `name` in `dir`, made by `make` and written there when missing.
/// A key found there from an older start is made owner-only too.
pub fn load_or(dir: &Path, name: &str, make: impl FnOnce() -> Result<Pem, String>) -> Result<Pem, String> {
    if let Some(p) = read_pair(dir, name) {
        restrict(&dir.join(format!("{name}.key")), 0o600).map_err(err)?;
        return Ok(p);
    }
    let p = make()?;
    write_pair(dir, name, &p)?;
    Ok(p)
}

/// A CA (`ca`) and a serving certificate (`apiserver`, with the SANs recorded
/// beside it) in `dir`, created when missing. A new CA invalidates what an
/// old one signed, so the serving certificate and `signed_by_ca` are dropped;
/// the serving certificate is re-issued when the wanted SANs change.
pub fn ca_and_serving(
    dir: &Path,
    ca_cn: &str,
    serving_cn: &str,
    sans: &[String],
    signed_by_ca: &[&str],
) -> Result<(Pem, Pem), String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    restrict(dir, 0o700).map_err(|e| format!("restricting {}: {e}", dir.display()))?;
    let ca = load_or(dir, "ca", || {
        for n in std::iter::once(&"apiserver").chain(signed_by_ca) {
            let _ = fs::remove_file(dir.join(format!("{n}.crt")));
        }
        new_ca(ca_cn)
    })?;
    let sans_file = dir.join("apiserver.sans");
    let wanted = sans.join(",");
    let serving = match (read_pair(dir, "apiserver"), fs::read_to_string(&sans_file).ok()) {
        (Some(p), Some(s)) if s == wanted => p,
        _ => {
            let p = serving_cert(&ca, serving_cn, sans)?;
            write_pair(dir, "apiserver", &p)?;
            fs::write(&sans_file, &wanted).map_err(err)?;
            p
        }
    };
    Ok((ca, serving))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::{parse_x509_pem, X509Certificate};

    /// The extensions strict verification looks at.
    #[derive(Default)]
    struct Extensions {
        subject_key_id: Option<Vec<u8>>,
        authority_key_id: Option<Vec<u8>>,
        /// (cA, critical) of basic constraints.
        basic_constraints: Option<(bool, bool)>,
        key_usage: bool,
    }

    fn extensions(pem: &str) -> Extensions {
        let (_, pem) = parse_x509_pem(pem.as_bytes()).expect("PEM");
        let cert: X509Certificate = pem.parse_x509().expect("certificate");
        let mut found = Extensions::default();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => found.subject_key_id = Some(id.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    found.authority_key_id = a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                ParsedExtension::BasicConstraints(b) => found.basic_constraints = Some((b.ca, ext.critical)),
                ParsedExtension::KeyUsage(_) => found.key_usage = true,
                _ => {}
            }
        }
        found
    }

    #[test]
    fn certificates_carry_what_strict_verification_requires() {
        let ca = new_ca("test-ca").expect("CA");
        let ca_ext = extensions(&ca.cert);
        assert!(ca_ext.subject_key_id.is_some(), "a CA names its key");
        assert_eq!(ca_ext.basic_constraints, Some((true, true)), "a CA says so in critical basic constraints");
        assert!(ca_ext.key_usage, "a CA has key usages");
        let serving = serving_cert(&ca, "server", &["127.0.0.1".into(), "localhost".into()]).expect("serving");
        let client = client_cert(&ca, "admin", &["system:masters"]).expect("client");
        for leaf in [&serving, &client] {
            let ext = extensions(&leaf.cert);
            assert!(ext.subject_key_id.is_some());
            assert_eq!(ext.authority_key_id, ca_ext.subject_key_id, "the issuer's key identifier is the CA's");
            assert_eq!(ext.basic_constraints, Some((false, true)));
            assert!(ext.key_usage);
        }
    }
}
