//! Certificates for the embedded default: a CA, a serving certificate and an
//! admin client certificate, and the front-proxy CA with the client
//! certificate the aggregator presents to extension API servers (kubeadm's
//! names), generated on first start under DATA_DIR/pki and reused afterwards
//! so kubeconfigs and backends' trust stay valid across restarts.

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

pub struct Pki {
    pub ca: Pem,
    pub serving: Pem,
    pub admin: Pem,
    /// A CA of its own, so that only the aggregator's client certificate
    /// passes a backend's request-header check.
    pub front_proxy_ca: Pem,
    pub front_proxy_client: Pem,
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

fn new_ca(cn: &str) -> Result<Pem, String> {
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

fn read_pair(dir: &Path, name: &str) -> Option<Pem> {
    let cert = fs::read_to_string(dir.join(format!("{name}.crt"))).ok()?;
    let key = fs::read_to_string(dir.join(format!("{name}.key"))).ok()?;
    Some(Pem { cert, key })
}

fn write_pair(dir: &Path, name: &str, pem: &Pem) -> Result<(), String> {
    fs::write(dir.join(format!("{name}.crt")), &pem.cert).map_err(err)?;
    let key_path: PathBuf = dir.join(format!("{name}.key"));
    fs::write(&key_path, &pem.key).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

/// Loads DATA_DIR/pki, creating what is missing. The serving certificate is
/// re-issued when the wanted SANs are not all in the stored one's list.
pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Pki, String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let ca = match read_pair(dir, "ca") {
        Some(p) => p,
        None => {
            let p = new_ca("kube-apiserver-ca")?;
            write_pair(dir, "ca", &p)?;
            // A new CA invalidates anything signed by an old one.
            for n in ["apiserver", "admin"] {
                let _ = fs::remove_file(dir.join(format!("{n}.crt")));
            }
            p
        }
    };
    let sans_file = dir.join("apiserver.sans");
    let wanted = sans.join(",");
    let serving = match (read_pair(dir, "apiserver"), fs::read_to_string(&sans_file).ok()) {
        (Some(p), Some(s)) if s == wanted => p,
        _ => {
            let p = serving_cert(&ca, "kube-apiserver", sans)?;
            write_pair(dir, "apiserver", &p)?;
            fs::write(&sans_file, &wanted).map_err(err)?;
            p
        }
    };
    let admin = match read_pair(dir, "admin") {
        Some(p) => p,
        None => {
            let p = client_cert(&ca, "admin", &["system:masters"])?;
            write_pair(dir, "admin", &p)?;
            p
        }
    };
    let front_proxy_ca = match read_pair(dir, "front-proxy-ca") {
        Some(p) => p,
        None => {
            let p = new_ca("front-proxy-ca")?;
            write_pair(dir, "front-proxy-ca", &p)?;
            let _ = fs::remove_file(dir.join("front-proxy-client.crt"));
            p
        }
    };
    let front_proxy_client = match read_pair(dir, "front-proxy-client") {
        Some(p) => p,
        None => {
            let p = client_cert(&front_proxy_ca, "front-proxy-client", &[])?;
            write_pair(dir, "front-proxy-client", &p)?;
            p
        }
    };
    Ok(Pki { ca, serving, admin, front_proxy_ca, front_proxy_client })
}
