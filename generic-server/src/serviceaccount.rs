//! ServiceAccount tokens (upstream pkg/serviceaccount): the keys
//! (--service-account-signing-key-file, --service-account-key-file), signing
//! the JWTs TokenRequest and the tokens controller hand out, the JWT
//! authenticator that accepts them (bound tokens of the configured issuers and
//! legacy Secret tokens of `kubernetes/serviceaccount`), and the OIDC discovery
//! documents an external verifier reads.
//!
//! Checking that a token's ServiceAccount, Pod or Secret still exists needs
//! the Stores, which generic-server does not know: the server that has them
//! binds an [`ObjectLookup`] once they are built.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ring::signature::{self, KeyPair};
use serde_json::{json, Map, Value};

use crate::authn::UserInfo;
use crate::meta::str_at;

/// The issuer of the tokens the legacy tokens controller puts into Secrets.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// The expiration the ServiceAccount admission plugin asks for in a pod's
/// projected token; such tokens are extended to a year (and warned about after
/// this) when --service-account-extend-token-expiration is on.
pub const WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS: i64 = 3607;
const EXPIRATION_EXTENSION_SECONDS: i64 = 365 * 24 * 60 * 60;
/// go-jose's DefaultLeeway for exp and nbf.
const LEEWAY_SECONDS: i64 = 60;

/// What the user info's extra keys are named (upstream
/// k8s.io/apiserver/pkg/authentication/serviceaccount).
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
pub const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// How a JWT failed go-jose's signature check.
const CRYPTO_ERROR: &str = "go-jose/go-jose: error in cryptographic primitive";

/// A public key tokens are verified with, named by its key ID (upstream's
/// keyIDFromPublicKey: the unpadded base64url SHA-256 of its PKIX DER).
#[derive(Clone, Debug)]
pub struct PublicKey {
    kid: String,
    material: KeyMaterial,
}

#[derive(Clone, Debug)]
enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// P-256, the uncompressed point.
    Es256 {
        point: Vec<u8>,
    },
}

impl PublicKey {
    fn new(material: KeyMaterial) -> Self {
        let kid = B64URL.encode(ring::digest::digest(&ring::digest::SHA256, &material.spki_der()));
        PublicKey { kid, material }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> &'static str {
        match self.material {
            KeyMaterial::Rsa { .. } => "RS256",
            KeyMaterial::Es256 { .. } => "ES256",
        }
    }

    /// The key as a JWK, with go-jose's field order.
    fn jwk(&self) -> Value {
        match &self.material {
            KeyMaterial::Rsa { n, e } => json!({"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256",
                "n": B64URL.encode(n), "e": B64URL.encode(e)}),
            KeyMaterial::Es256 { point } => {
                let (x, y) = point.get(1..).unwrap_or_default().split_at(point.len().saturating_sub(1) / 2);
                json!({"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
                    "x": B64URL.encode(x), "y": B64URL.encode(y)})
            }
        }
    }

    fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> Result<(), String> {
        if alg != self.alg() {
            return Err(CRYPTO_ERROR.into());
        }
        let ok = match &self.material {
            KeyMaterial::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            KeyMaterial::Es256 { point } => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
        };
        ok.then_some(()).ok_or_else(|| CRYPTO_ERROR.into())
    }
}

impl KeyMaterial {
    /// The SubjectPublicKeyInfo DER Go's x509.MarshalPKIXPublicKey writes.
    fn spki_der(&self) -> Vec<u8> {
        const RSA_ENCRYPTION: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        const PRIME256V1: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let (algorithm, key) = match self {
            KeyMaterial::Rsa { n, e } => {
                let rsa = der(0x30, &[der_uint(n), der_uint(e)].concat());
                (der(0x30, &[RSA_ENCRYPTION, &[0x05, 0x00]].concat()), rsa)
            }
            KeyMaterial::Es256 { point } => (der(0x30, &[EC_PUBLIC_KEY, PRIME256V1].concat()), point.clone()),
        };
        der(0x30, &[algorithm, der(0x03, &[&[0u8][..], &key].concat())].concat())
    }
}

/// One DER element.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER of the unsigned big-endian `bytes`.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut content = if trimmed.first().is_some_and(|b| b & 0x80 != 0) { vec![0] } else { Vec::new() };
    content.extend(if trimmed.is_empty() { vec![0] } else { trimmed });
    der(0x02, &content)
}

/// The private key tokens are signed with.
pub struct Signer {
    key: SigningKey,
    public: PublicKey,
    rng: ring::rand::SystemRandom,
}

enum SigningKey {
    Rsa(signature::RsaKeyPair),
    Es256(signature::EcdsaKeyPair),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.public.kid).finish()
    }
}

impl Signer {
    /// The first private key in a PEM file: RSA (PKCS#1 or PKCS#8) or P-256
    /// ECDSA (SEC1 or PKCS#8), as upstream's keyutil.ParsePrivateKeyPEM.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        use rustls_pki_types::pem::SectionKind;
        for (kind, der) in pem_sections(pem)? {
            let key = match kind {
                SectionKind::RsaPrivateKey => signature::RsaKeyPair::from_der(&der).map(SigningKey::Rsa),
                SectionKind::PrivateKey => signature::RsaKeyPair::from_pkcs8(&der)
                    .map(SigningKey::Rsa)
                    .or_else(|_| es256_from_pkcs8(&der).map(SigningKey::Es256)),
                SectionKind::EcPrivateKey => es256_from_pkcs8(&sec1_to_pkcs8(&der)).map(SigningKey::Es256),
                _ => continue,
            };
            let key = key.map_err(|e| format!("unsupported private key: {e}"))?;
            let material = match &key {
                SigningKey::Rsa(k) => {
                    let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                    KeyMaterial::Rsa { n: c.n, e: c.e }
                }
                SigningKey::Es256(k) => KeyMaterial::Es256 { point: k.public_key().as_ref().to_vec() },
            };
            return Ok(Signer { key, public: PublicKey::new(material), rng: ring::rand::SystemRandom::new() });
        }
        Err("data does not contain a valid RSA or ECDSA private key".into())
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// A compact JWS of `payload`, its header naming the algorithm and key.
    fn sign(&self, payload: &Value) -> Result<String, String> {
        let header = json!({"alg": self.public.alg(), "kid": self.public.kid});
        let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(payload.to_string()));
        let sig = match &self.key {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut sig)
                    .map_err(|_| "signing failed".to_string())?;
                sig
            }
            SigningKey::Es256(k) => {
                k.sign(&self.rng, input.as_bytes()).map_err(|_| "signing failed".to_string())?.as_ref().to_vec()
            }
        };
        Ok(format!("{input}.{}", B64URL.encode(sig)))
    }
}

fn es256_from_pkcs8(der: &[u8]) -> Result<signature::EcdsaKeyPair, ring::error::KeyRejected> {
    signature::EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        der,
        &ring::rand::SystemRandom::new(),
    )
}

/// The AlgorithmIdentifier of a P-256 ECDSA key (id-ecPublicKey with the
/// prime256v1 curve), as DER.
const P256_ALGORITHM: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
    0x01, 0x07,
];

/// Wraps a SEC1 ECPrivateKey (P-256) into the PKCS#8 ring reads.
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    der(0x30, &[&[0x02, 0x01, 0x00][..], P256_ALGORITHM, &der(0x04, sec1)].concat())
}

fn pem_sections(pem: &[u8]) -> Result<Vec<(rustls_pki_types::pem::SectionKind, Vec<u8>)>, String> {
    let mut rd: &[u8] = pem;
    let mut out = Vec::new();
    while let Some(section) = rustls_pki_types::pem::from_buf(&mut rd).map_err(|e| format!("reading PEM: {e}"))? {
        out.push(section);
    }
    Ok(out)
}

/// Every public key in a PEM file (public keys, certificates, or the public
/// halves of private keys), as upstream's keyutil.ParsePublicKeysPEM.
pub fn public_keys_from_pem(pem: &[u8]) -> Result<Vec<PublicKey>, String> {
    use rustls_pki_types::pem::SectionKind;
    let mut keys = Vec::new();
    for (kind, der) in pem_sections(pem)? {
        match kind {
            SectionKind::PublicKey => keys.push(public_key_from_spki(&der)?),
            SectionKind::Certificate => {
                let (_, cert) =
                    x509_parser::parse_x509_certificate(&der).map_err(|e| format!("parsing certificate: {e}"))?;
                keys.push(public_key_from_spki(cert.public_key().raw)?);
            }
            SectionKind::RsaPrivateKey | SectionKind::PrivateKey | SectionKind::EcPrivateKey => {
                let one = pem_block(kind, &der);
                keys.push(Signer::from_pem(one.as_bytes())?.public);
            }
            _ => {}
        }
    }
    if keys.is_empty() {
        return Err("data does not contain any valid RSA or ECDSA public keys".into());
    }
    Ok(keys)
}

fn pem_block(kind: rustls_pki_types::pem::SectionKind, der: &[u8]) -> String {
    use rustls_pki_types::pem::SectionKind;
    let label = match kind {
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    pem(label, der)
}

/// `der` as a PEM block, its base64 in lines of 64 as OpenSSL writes them.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn public_key_from_spki(der: &[u8]) -> Result<PublicKey, String> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey as Parsed;
    let (_, spki) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(der).map_err(|e| format!("parsing public key: {e}"))?;
    let p256 = x509_parser::oid_registry::OID_EC_P256;
    match spki.parsed().map_err(|e| format!("parsing public key: {e}"))? {
        Parsed::RSA(rsa) => {
            let strip = |b: &[u8]| b.iter().copied().skip_while(|x| *x == 0).collect::<Vec<u8>>();
            Ok(PublicKey::new(KeyMaterial::Rsa { n: strip(rsa.modulus), e: strip(rsa.exponent) }))
        }
        Parsed::EC(point)
            if spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).as_ref() == Some(&p256) =>
        {
            Ok(PublicKey::new(KeyMaterial::Es256 { point: point.data().to_vec() }))
        }
        _ => Err("unsupported public key type: only RSA and P-256 ECDSA keys are supported".into()),
    }
}

/// A fresh P-256 ECDSA key: (private PKCS#8 PEM, public PKIX PEM). Tokens
/// it signs are ES256, which upstream verifies as it does RS256; generating
/// it takes microseconds where an RSA key costs a first start 100 ms or more.
pub fn generate_es256_pem() -> Result<(String, String), String> {
    use rustls_pki_types::pem::SectionKind;
    let rng = ring::rand::SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|e| e.to_string())?;
    let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(|e| e.to_string())?;
    let point = signature::KeyPair::public_key(&pair).as_ref();
    let spki = der(0x30, &[P256_ALGORITHM, &der(0x03, &[&[0x00][..], point].concat())].concat());
    Ok((pem_block(SectionKind::PrivateKey, pkcs8.as_ref()), pem("PUBLIC KEY", &spki)))
}

/// A fresh 2048-bit RSA key, as kubeadm's sa.key (for tests of RS256; the
/// server generates ES256 keys): (private PKCS#1 PEM,
/// public PKIX PEM).
#[cfg(test)]
pub fn generate_rsa_pem() -> Result<(String, String), String> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePublicKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).map_err(|e| e.to_string())?;
    let private = key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).map_err(|e| e.to_string())?;
    let public = key.to_public_key().to_public_key_pem(rsa::pkcs8::LineEnding::LF).map_err(|e| e.to_string())?;
    Ok((private.to_string(), public))
}

/// The kinds a token's validation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenObject {
    ServiceAccount,
    Secret,
    Pod,
    Node,
}

/// The Stores a token's validation reads, supplied by the server that has
/// them (upstream's ServiceAccountTokenGetter).
#[async_trait::async_trait]
pub trait ObjectLookup: Send + Sync {
    /// The object, `None` if it does not exist.
    async fn get(&self, kind: TokenObject, namespace: &str, name: &str) -> Result<Option<Arc<Value>>, String>;
}

/// The settings of ServiceAccount tokens, named after kube-apiserver's flags.
#[derive(Debug)]
pub struct ServiceAccountTokens {
    /// --service-account-issuer: the first signs, all are accepted.
    pub issuers: Vec<String>,
    /// --api-audiences (default: the issuers).
    pub api_audiences: Vec<String>,
    /// --service-account-max-token-expiration in seconds; 0 is no maximum.
    pub max_expiration_seconds: i64,
    /// --service-account-extend-token-expiration.
    pub extend_expiration: bool,
    signer: Signer,
    keys: Vec<PublicKey>,
    discovery: Option<Arc<Discovery>>,
    lookup: OnceLock<Arc<dyn ObjectLookup>>,
}

impl std::fmt::Debug for dyn ObjectLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectLookup")
    }
}

/// The OIDC discovery documents (upstream pkg/serviceaccount/openidmetadata.go),
/// rendered once.
#[derive(Debug)]
pub struct Discovery {
    pub configuration: Vec<u8>,
    pub jwks: Vec<u8>,
}

pub const OPENID_CONFIG_PATH: &str = "/.well-known/openid-configuration";
pub const JWKS_PATH: &str = "/openid/v1/jwks";

/// A bound object a token names: a Pod or Secret, and the Pod's Node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// What a TokenRequest asks to be put into a token (upstream's Claims()).
#[derive(Debug, Clone, Default)]
pub struct TokenClaims {
    pub namespace: String,
    pub service_account: ObjectRef,
    pub pod: Option<ObjectRef>,
    pub secret: Option<ObjectRef>,
    pub node: Option<ObjectRef>,
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    /// Set when the expiration was extended: when the token's holder should
    /// have refreshed it.
    pub warn_after_seconds: i64,
}

/// Who a valid token identifies, and for which of the requested audiences.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: UserInfo,
    pub audiences: Vec<String>,
}

impl ServiceAccountTokens {
    /// `verify` defaults to the signer's public key when empty.
    /// `jwks_uri` (--service-account-jwks-uri) or, without it,
    /// `external_address` (host:port) names the key set in discovery.
    pub fn new(
        issuers: Vec<String>,
        api_audiences: Vec<String>,
        signer: Signer,
        mut verify: Vec<PublicKey>,
        jwks_uri: Option<&str>,
        external_address: &str,
    ) -> Result<Self, String> {
        if issuers.is_empty() {
            return Err("service-account-issuer is a required flag".into());
        }
        for i in &issuers {
            if i.contains(':') && url_scheme(i).is_none() {
                return Err(format!("service-account-issuer {i:?} contained a ':' but was not a valid URL"));
            }
        }
        if verify.is_empty() {
            verify.push(signer.public.clone());
        }
        let api_audiences = if api_audiences.is_empty() { issuers.clone() } else { api_audiences };
        let discovery = match discovery(&issuers[0], jwks_uri, external_address, &verify) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                tracing::warn!("not serving OIDC discovery: {e}");
                None
            }
        };
        Ok(ServiceAccountTokens {
            issuers,
            api_audiences,
            max_expiration_seconds: 0,
            extend_expiration: true,
            signer,
            keys: verify,
            discovery,
            lookup: OnceLock::new(),
        })
    }

    /// Where tokens' objects are looked up (only the first call counts).
    pub fn bind_lookup(&self, lookup: Arc<dyn ObjectLookup>) {
        let _ = self.lookup.set(lookup);
    }

    pub fn discovery(&self) -> Option<&Arc<Discovery>> {
        self.discovery.as_ref()
    }

    /// A token for `c`, and when it expires (Unix seconds).
    pub fn issue(&self, c: &TokenClaims) -> Result<(String, i64), String> {
        let now = chrono::Utc::now().timestamp();
        let exp = now + c.expiration_seconds;
        let obj = |r: &ObjectRef| json!({"name": r.name, "uid": r.uid});
        let mut k8s = Map::new();
        k8s.insert("namespace".into(), json!(c.namespace));
        if let Some(node) = &c.node {
            k8s.insert("node".into(), obj(node));
        }
        if let Some(pod) = &c.pod {
            k8s.insert("pod".into(), obj(pod));
        } else if let Some(secret) = &c.secret {
            k8s.insert("secret".into(), obj(secret));
        }
        k8s.insert("serviceaccount".into(), obj(&c.service_account));
        if c.warn_after_seconds != 0 {
            k8s.insert("warnafter".into(), json!(now + c.warn_after_seconds));
        }
        // Go marshals the merged claims from a map: keys in byte order.
        let payload = json!({
            "aud": c.audiences,
            "exp": exp,
            "iat": now,
            "iss": self.issuers[0],
            "jti": crate::meta::new_uuid().to_string(),
            "kubernetes.io": Value::Object(k8s),
            "nbf": now,
            "sub": username(&c.namespace, &c.service_account.name),
        });
        Ok((self.signer.sign(&payload)?, exp))
    }

    /// The non-expiring token of a legacy token Secret (upstream LegacyClaims).
    pub fn legacy_token(&self, namespace: &str, sa: &ObjectRef, secret_name: &str) -> Result<String, String> {
        self.signer.sign(&json!({
            "iss": LEGACY_ISSUER,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret_name,
            "kubernetes.io/serviceaccount/service-account.name": sa.name,
            "kubernetes.io/serviceaccount/service-account.uid": sa.uid,
            "sub": username(namespace, &sa.name),
        }))
    }

    /// Upstream's two JWT authenticators: bound tokens of the issuers, then
    /// legacy Secret tokens. `Ok(None)` when the token is not one of ours;
    /// an error says why one of ours is not valid. `requested` are the
    /// audiences the caller must be in (the API audiences for requests).
    pub async fn authenticate(&self, token: &str, requested: &[String]) -> Result<Option<Authenticated>, String> {
        let Some(jwt) = Jwt::parse(token) else { return Ok(None) };
        let iss = jwt.payload.get("iss").and_then(Value::as_str).unwrap_or("");
        let legacy = iss == LEGACY_ISSUER;
        if !legacy && !self.issuers.iter().any(|i| i == iss) {
            return Ok(None);
        }
        let kid = jwt.header.get("kid").and_then(Value::as_str).unwrap_or("");
        let alg = jwt.header.get("alg").and_then(Value::as_str).unwrap_or("");
        let keys: Vec<&PublicKey> = self.keys.iter().filter(|k| kid.is_empty() || k.kid == kid).collect();
        if keys.is_empty() {
            return Err("invalid signature, no keys found".into());
        }
        let errors: Vec<String> =
            keys.iter().map_while(|k| k.verify(alg, jwt.signing_input.as_bytes(), &jwt.signature).err()).collect();
        if errors.len() == keys.len() {
            return Err(aggregate(&errors));
        }
        let token_auds = match jwt.payload.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => Vec::new(),
        };
        // Legacy tokens carry no audience and are good for the API's.
        let token_auds = if token_auds.is_empty() { self.api_audiences.clone() } else { token_auds };
        let auds: Vec<String> = token_auds.iter().filter(|a| requested.contains(a)).cloned().collect();
        if auds.is_empty() {
            return Err(format!(
                "token audiences {} is invalid for the target audiences {}",
                crate::status::go_quoted(&token_auds),
                crate::status::go_quoted(requested)
            ));
        }
        let lookup = self.lookup.get().ok_or("service account token lookup is not ready")?;
        let user = if legacy {
            validate_legacy(lookup.as_ref(), token, &jwt.payload).await?
        } else {
            validate_bound(lookup.as_ref(), &jwt.payload).await?
        };
        Ok(Some(Authenticated { user, audiences: auds }))
    }
}

/// The scheme of a URL-like string ("https" of "https://..."), if it has one.
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, rest) = s.split_once("://")?;
    (!scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) && !rest.is_empty())
        .then_some(scheme)
}

/// Upstream's NewOpenIDMetadata: the issuer must be an https URL without
/// query or fragment; the key set is at `jwks_uri` or at the external address.
fn discovery(
    issuer: &str,
    jwks_uri: Option<&str>,
    external_address: &str,
    keys: &[PublicKey],
) -> Result<Discovery, String> {
    if url_scheme(issuer) != Some("https") {
        return Err(format!("issuer URL must use https scheme, got: {issuer}"));
    }
    if issuer.contains('?') {
        return Err(format!("issuer URL may not include a query, got: {issuer}"));
    }
    if issuer.contains('#') {
        return Err(format!("issuer URL may not include a fragment, got: {issuer}"));
    }
    let jwks_uri = match jwks_uri.filter(|u| !u.is_empty()) {
        Some(u) if url_scheme(u) == Some("https") => u.to_string(),
        Some(u) => return Err(format!("jwksURI requires https scheme, parsed as: {u}")),
        None => format!("https://{external_address}{JWKS_PATH}"),
    };
    let mut algs: Vec<&str> = keys.iter().map(PublicKey::alg).collect();
    algs.sort_unstable();
    algs.dedup();
    let configuration = json!({
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    });
    let jwks = json!({"keys": keys.iter().map(PublicKey::jwk).collect::<Vec<_>>()});
    Ok(Discovery { configuration: configuration.to_string().into_bytes(), jwks: jwks.to_string().into_bytes() })
}

/// A compact JWS, decoded but not verified.
struct Jwt {
    header: Value,
    payload: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jwt {
    fn parse(token: &str) -> Option<Jwt> {
        if token.trim_start().starts_with('{') {
            return None;
        }
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let decode = |s: &str| B64URL.decode(s.trim_end_matches('=')).ok();
        let header: Value = serde_json::from_slice(&decode(h)?).ok()?;
        let payload: Value = serde_json::from_slice(&decode(p)?).ok()?;
        (header.is_object() && payload.is_object()).then_some(())?;
        Some(Jwt { header, payload, signing_input: format!("{h}.{p}"), signature: decode(s)? })
    }
}

/// utilerrors.NewAggregate's message.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The user a ServiceAccount token stands for (upstream ServiceAccountInfo.UserInfo).
fn sa_user(
    namespace: &str,
    sa: &ObjectRef,
    pod: Option<&ObjectRef>,
    node: Option<&ObjectRef>,
    credential_id: &str,
) -> UserInfo {
    let mut extra: HashMap<String, Vec<String>> = HashMap::new();
    if let Some(pod) = pod.filter(|p| !p.name.is_empty() && !p.uid.is_empty()) {
        extra.insert(POD_NAME_KEY.into(), vec![pod.name.clone()]);
        extra.insert(POD_UID_KEY.into(), vec![pod.uid.clone()]);
    }
    if !credential_id.is_empty() {
        extra.insert(CREDENTIAL_ID_KEY.into(), vec![credential_id.into()]);
    }
    if let Some(node) = node.filter(|n| !n.name.is_empty()) {
        extra.insert(NODE_NAME_KEY.into(), vec![node.name.clone()]);
        if !node.uid.is_empty() {
            extra.insert(NODE_UID_KEY.into(), vec![node.uid.clone()]);
        }
    }
    UserInfo {
        name: username(namespace, &sa.name),
        uid: sa.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
        extra,
    }
}

fn object_ref(v: Option<&Value>) -> Option<ObjectRef> {
    let v = v.filter(|v| v.is_object())?;
    Some(ObjectRef { name: str_at(v, "/name").into(), uid: str_at(v, "/uid").into() })
}

fn uid(obj: &Value) -> &str {
    str_at(obj, "/metadata/uid")
}

/// Whether an object was deleted more than the leeway ago (upstream treats
/// an object still terminating within the leeway as alive).
fn deleted_before_leeway(obj: &Value) -> bool {
    let ts = str_at(obj, "/metadata/deletionTimestamp");
    chrono::DateTime::parse_from_rfc3339(ts)
        .is_ok_and(|t| t.timestamp() < chrono::Utc::now().timestamp() - LEEWAY_SECONDS)
}

/// The lister's NotFound for a ServiceAccount, as upstream's getter reports it.
fn sa_not_found(name: &str) -> String {
    format!("serviceaccount \"{name}\" not found")
}

/// Upstream's validator for bound tokens (pkg/serviceaccount/claims.go).
async fn validate_bound(lookup: &dyn ObjectLookup, claims: &Value) -> Result<UserInfo, String> {
    let now = chrono::Utc::now().timestamp();
    let num = |k: &str| claims.get(k).and_then(Value::as_f64).map(|f| f as i64);
    if let Some(nbf) = num("nbf") {
        if now + LEEWAY_SECONDS < nbf {
            return Err("service account token is not valid yet".into());
        }
    }
    if let Some(exp) = num("exp") {
        if now - LEEWAY_SECONDS > exp {
            return Err("service account token has expired".into());
        }
    }
    if num("iat").is_some_and(|iat| now + LEEWAY_SECONDS < iat) {
        return Err("service account token claims could not be validated due to unexpected validation error".into());
    }
    let k8s = claims.get("kubernetes.io").cloned().unwrap_or(Value::Null);
    let namespace = str_at(&k8s, "/namespace");
    let sa = object_ref(k8s.get("serviceaccount")).unwrap_or_default();
    let service_account =
        lookup.get(TokenObject::ServiceAccount, namespace, &sa.name).await?.ok_or_else(|| sa_not_found(&sa.name))?;
    if deleted_before_leeway(&service_account) {
        return Err(format!("service account {namespace}/{} has been deleted", sa.name));
    }
    if uid(&service_account) != sa.uid {
        return Err(format!("service account UID ({}) does not match claim ({})", uid(&service_account), sa.uid));
    }
    let invalidated = || "service account token has been invalidated".to_string();
    if let Some(secret) = object_ref(k8s.get("secret")) {
        let found =
            lookup.get(TokenObject::Secret, namespace, &secret.name).await.ok().flatten().ok_or_else(invalidated)?;
        if deleted_before_leeway(&found) {
            return Err(invalidated());
        }
        if uid(&found) != secret.uid {
            return Err(format!(
                "secret UID ({}) does not match service account secret ref claim ({})",
                uid(&found),
                secret.uid
            ));
        }
    }
    let pod = object_ref(k8s.get("pod"));
    if let Some(pod) = &pod {
        let found = lookup.get(TokenObject::Pod, namespace, &pod.name).await.ok().flatten().ok_or_else(invalidated)?;
        if deleted_before_leeway(&found) {
            return Err(invalidated());
        }
        if uid(&found) != pod.uid {
            return Err(format!(
                "pod UID ({}) does not match service account pod ref claim ({})",
                uid(&found),
                pod.uid
            ));
        }
    }
    // A pod-bound token's node is information only; a node-bound one's must
    // still be the same Node.
    let node = object_ref(k8s.get("node"));
    if let (Some(node), None) = (&node, &pod) {
        let found = lookup.get(TokenObject::Node, "", &node.name).await.ok().flatten().ok_or_else(invalidated)?;
        if deleted_before_leeway(&found) {
            return Err(invalidated());
        }
        if uid(&found) != node.uid {
            return Err(format!(
                "node UID ({}) does not match service account node ref claim ({})",
                uid(&found),
                node.uid
            ));
        }
    }
    let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
    let credential_id = if jti.is_empty() { String::new() } else { format!("JTI={jti}") };
    Ok(sa_user(namespace, &sa, pod.as_ref(), node.as_ref(), &credential_id))
}

/// Upstream's legacy validator (pkg/serviceaccount/legacy.go): the Secret
/// must still hold this very token, and its ServiceAccount be the same.
async fn validate_legacy(lookup: &dyn ObjectLookup, token: &str, claims: &Value) -> Result<UserInfo, String> {
    let claim = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
    let sub = claim("sub");
    if sub.is_empty() {
        return Err("sub claim is missing".into());
    }
    let required = [
        ("kubernetes.io/serviceaccount/namespace", "namespace claim is missing"),
        ("kubernetes.io/serviceaccount/secret.name", "secretName claim is missing"),
        ("kubernetes.io/serviceaccount/service-account.name", "serviceAccountName claim is missing"),
        ("kubernetes.io/serviceaccount/service-account.uid", "serviceAccountUID claim is missing"),
    ];
    for (k, missing) in required {
        if claim(k).is_empty() {
            return Err(missing.into());
        }
    }
    let namespace = claim(required[0].0);
    let secret_name = claim(required[1].0);
    let sa = ObjectRef { name: claim(required[2].0).into(), uid: claim(required[3].0).into() };
    if sub != username(namespace, &sa.name) {
        return Err("sub claim is invalid".into());
    }
    let invalidated = || "token has been invalidated".to_string();
    let secret =
        lookup.get(TokenObject::Secret, namespace, secret_name).await.ok().flatten().ok_or_else(invalidated)?;
    if secret.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        return Err(invalidated());
    }
    let stored = secret
        .pointer("/data/token")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    if !constant_time_eq(&stored, token.as_bytes()) {
        return Err("token does not match server's copy".into());
    }
    let found =
        lookup.get(TokenObject::ServiceAccount, namespace, &sa.name).await?.ok_or_else(|| sa_not_found(&sa.name))?;
    if found.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        return Err(format!("service account {namespace}/{} has been deleted", sa.name));
    }
    if uid(&found) != sa.uid {
        return Err(format!("service account UID ({}) does not match claim ({})", uid(&found), sa.uid));
    }
    Ok(sa_user(namespace, &sa, None, None, ""))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Extends a pod's projected token as upstream's TokenRequest does with
/// --service-account-extend-token-expiration: (expiration, warn after).
pub fn extended_expiration(tokens: &ServiceAccountTokens, requested: i64, audiences: &[String]) -> (i64, i64) {
    let api_only = audiences.iter().all(|a| tokens.api_audiences.contains(a));
    if tokens.extend_expiration && requested == WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS && api_only {
        (EXPIRATION_EXTENSION_SECONDS.max(tokens.max_expiration_seconds), requested)
    } else {
        (requested, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Objects(HashMap<(TokenObject, String, String), Value>);

    #[async_trait::async_trait]
    impl ObjectLookup for Objects {
        async fn get(&self, kind: TokenObject, namespace: &str, name: &str) -> Result<Option<Arc<Value>>, String> {
            Ok(self.0.get(&(kind, namespace.into(), name.into())).cloned().map(Arc::new))
        }
    }

    fn tokens() -> ServiceAccountTokens {
        let (private, _) = generate_rsa_pem().unwrap();
        let signer = Signer::from_pem(private.as_bytes()).unwrap();
        let t = ServiceAccountTokens::new(vec!["https://issuer".into()], vec![], signer, vec![], None, "h:1").unwrap();
        let sa = json!({"metadata": {"name": "sa", "namespace": "ns", "uid": "u1"}});
        let key = (TokenObject::ServiceAccount, "ns".to_string(), "sa".to_string());
        t.bind_lookup(Arc::new(Objects([(key, sa)].into_iter().collect())));
        t
    }

    fn claims() -> TokenClaims {
        TokenClaims {
            namespace: "ns".into(),
            service_account: ObjectRef { name: "sa".into(), uid: "u1".into() },
            audiences: vec!["https://issuer".into()],
            expiration_seconds: 600,
            ..Default::default()
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn issued_tokens_authenticate_and_tampered_ones_do_not() {
        let t = tokens();
        let (token, _) = t.issue(&claims()).unwrap();
        let auds = vec!["https://issuer".to_string()];
        let ok = run(t.authenticate(&token, &auds)).unwrap().unwrap();
        assert_eq!(ok.user.name, "system:serviceaccount:ns:sa");
        assert_eq!(ok.user.groups, ["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"]);
        assert!(ok.user.extra[CREDENTIAL_ID_KEY][0].starts_with("JTI="));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[2] = B64URL.encode([1u8; 256]);
        assert_eq!(run(t.authenticate(&parts.join("."), &auds)).unwrap_err(), CRYPTO_ERROR);
        assert_eq!(
            run(t.authenticate(&token, &["other".into()])).unwrap_err(),
            r#"token audiences ["https://issuer"] is invalid for the target audiences ["other"]"#
        );
        assert!(run(t.authenticate("garbage", &auds)).unwrap().is_none());
    }

    #[test]
    fn pod_token_expiration_is_extended_for_api_audiences_only() {
        let t = tokens();
        let api = vec!["https://issuer".to_string()];
        assert_eq!(extended_expiration(&t, 3607, &api), (EXPIRATION_EXTENSION_SECONDS, 3607));
        assert_eq!(extended_expiration(&t, 3600, &api), (3600, 0));
        assert_eq!(extended_expiration(&t, 3607, &["vault".into()]), (3607, 0));
    }

    #[test]
    fn recreated_service_account_invalidates() {
        let t = tokens();
        let mut c = claims();
        c.service_account.uid = "old".into();
        let (token, _) = t.issue(&c).unwrap();
        let err = run(t.authenticate(&token, &["https://issuer".into()])).unwrap_err();
        assert_eq!(err, "service account UID (u1) does not match claim (old)");
    }

    #[test]
    fn spki_der_and_kid_match_the_pem_public_key() {
        let (private, public) = generate_rsa_pem().unwrap();
        let signer = Signer::from_pem(private.as_bytes()).unwrap();
        let parsed = public_keys_from_pem(public.as_bytes()).unwrap();
        assert_eq!(parsed[0].kid, signer.public.kid);
        let der: Vec<u8> = pem_sections(public.as_bytes()).unwrap().remove(0).1;
        assert_eq!(signer.public.material.spki_der(), der);
    }

    /// A SEC1 P-256 key as openssl writes it (a test fixture, not a secret).
    const EC_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIGnjEZfqsDzKd8vyLs0Cd/2FS6/C8tes23nERfuxr0fpoAoGCCqGSM49
AwEHoUQDQgAE8GEoyDeNW1pVseikxncbXT97jhnjyUdUn+zvIJJx4g1Dva6E9mLx
Z3NQfMJdE3Lr8ccVdVb7my5DMn6VlKNW5g==
-----END EC PRIVATE KEY-----
";

    #[test]
    fn es256_keys_sign_and_verify() {
        let signer = Signer::from_pem(EC_KEY.as_bytes()).unwrap();
        assert_eq!(signer.public.alg(), "ES256");
        let token = signer.sign(&json!({"iss": "x"})).unwrap();
        let jwt = Jwt::parse(&token).unwrap();
        signer.public.verify("ES256", jwt.signing_input.as_bytes(), &jwt.signature).unwrap();
        assert!(signer.public.verify("RS256", jwt.signing_input.as_bytes(), &jwt.signature).is_err());
        let jwk = signer.public.jwk();
        assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("EC"), Some("P-256")));
        assert_eq!(B64URL.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
        assert_eq!(public_keys_from_pem(EC_KEY.as_bytes()).unwrap()[0].kid, signer.public.kid);
    }

    #[test]
    fn generated_keys_sign_and_their_public_half_verifies() {
        let (private, public) = generate_es256_pem().unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{private}");
        assert!(public.lines().all(|l| l.len() <= 64), "{public}");
        let signer = Signer::from_pem(private.as_bytes()).unwrap();
        let token = signer.sign(&json!({"iss": "x"})).unwrap();
        let jwt = Jwt::parse(&token).unwrap();
        let published = &public_keys_from_pem(public.as_bytes()).unwrap()[0];
        // The same key ID from either half, as verifiers match them by it.
        assert_eq!(published.kid, signer.public.kid);
        published.verify("ES256", jwt.signing_input.as_bytes(), &jwt.signature).unwrap();
    }

    #[test]
    fn discovery_requires_https_issuer() {
        let (private, _) = generate_rsa_pem().unwrap();
        let signer = Signer::from_pem(private.as_bytes()).unwrap();
        let keys = vec![signer.public.clone()];
        assert!(discovery("http://x", None, "h:1", &keys).is_err());
        let d = discovery("https://x", None, "h:1", &keys).unwrap();
        let c: Value = serde_json::from_slice(&d.configuration).unwrap();
        assert_eq!(c["jwks_uri"], "https://h:1/openid/v1/jwks");
        assert_eq!(c["id_token_signing_alg_values_supported"], json!(["RS256"]));
    }
}
