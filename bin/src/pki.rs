//! Certificates for the embedded default: a CA, a serving certificate and an
//! admin client certificate, and the front-proxy CA with the client
//! certificate the aggregator presents to extension API servers (kubeadm's
//! names), generated on first start under DATA_DIR/pki and reused afterwards
//! so kubeconfigs and backends' trust stay valid across restarts; and the
//! ServiceAccount signing key pair `sa.key` / `sa.pub` (kubeadm's names).

use std::fs;
use std::path::Path;

pub use generic_server::pki::Pem;
use generic_server::pki::{ca_and_serving, client_cert, load_or, new_ca};

pub struct Pki {
    pub ca: Pem,
    pub serving: Pem,
    pub admin: Pem,
    /// A CA of its own, so that only the aggregator's client certificate
    /// passes a backend's request-header check.
    pub front_proxy_ca: Pem,
    pub front_proxy_client: Pem,
}

/// Loads DATA_DIR/pki, creating what is missing. The serving certificate is
/// re-issued when the wanted SANs are not all in the stored one's list.
pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Pki, String> {
    let (ca, serving) = ca_and_serving(dir, "kube-apiserver-ca", "kube-apiserver", sans, &["admin"])?;
    let admin = load_or(dir, "admin", || client_cert(&ca, "admin", &["system:masters"]))?;
    let front_proxy_ca = load_or(dir, "front-proxy-ca", || {
        let _ = fs::remove_file(dir.join("front-proxy-client.crt"));
        new_ca("front-proxy-ca")
    })?;
    let front_proxy_client =
        load_or(dir, "front-proxy-client", || client_cert(&front_proxy_ca, "front-proxy-client", &[]))?;
    Ok(Pki { ca, serving, admin, front_proxy_ca, front_proxy_client })
}

/// DATA_DIR/pki/sa.key (PEM, created 0600 when missing, with sa.pub beside
/// it for external verifiers): the key ServiceAccount tokens are signed with
/// when --service-account-signing-key-file is not given.
pub fn service_account_key(dir: &Path) -> Result<Vec<u8>, String> {
    let key = dir.join("sa.key");
    if let Ok(pem) = fs::read(&key) {
        return Ok(pem);
    }
    let (private, public) = generic_server::serviceaccount::generate_es256_pem()?;
    generic_server::pki::write_private(&key, private.as_bytes())
        .map_err(|e| format!("writing {}: {e}", key.display()))?;
    fs::write(dir.join("sa.pub"), public).map_err(|e| format!("writing sa.pub: {e}"))?;
    Ok(private.into_bytes())
}
