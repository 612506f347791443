//! Authentication: who is calling. x509 client certificates (verified by rustls
//! against the client CA during the handshake; here we read CN and O), bearer
//! tokens (a static token file, ServiceAccount JWTs from [`crate::serviceaccount`]),
//! anonymous access, and the request-header authenticator of servers behind a
//! front proxy (the aggregator).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::request_info::path_unescape;

/// The authenticated caller, put into request extensions by the filter chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: HashMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        }
    }

    /// authentication.k8s.io's UserInfo (reviews, AdmissionReview), empty
    /// fields left out as upstream's omitempty leaves them.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let mut m = serde_json::Map::new();
        m.insert("username".into(), json!(self.name));
        if !self.uid.is_empty() {
            m.insert("uid".into(), json!(self.uid));
        }
        if !self.groups.is_empty() {
            m.insert("groups".into(), json!(self.groups));
        }
        if !self.extra.is_empty() {
            let extra: std::collections::BTreeMap<_, _> = self.extra.iter().collect();
            m.insert("extra".into(), json!(extra));
        }
        serde_json::Value::Object(m)
    }
}

/// The subject of a verified client certificate (DER): CN is the user, each O a group.
pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let mut groups: Vec<String> =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    groups.push("system:authenticated".into());
    Some(UserInfo { name, groups, ..Default::default() })
}

/// Upstream's request-header authenticator (--requestheader-* flags): a front
/// proxy that presents a client certificate issued by the request-header CA,
/// with an allowed common name, vouches for the user it names in headers.
#[derive(Debug)]
pub struct RequestHeaderAuthenticator {
    verifier: std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier>,
    allowed_names: Vec<String>,
    username_headers: Vec<String>,
    group_headers: Vec<String>,
    /// Lower-cased, as header names compare.
    extra_prefixes: Vec<String>,
}

/// Why a request-header authentication did not yield a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestHeaderRefusal {
    /// No client certificate, or no username header: this authenticator has
    /// nothing to say.
    NotApplicable,
    /// The certificate is not the front proxy's (wrong CA, not an allowed name).
    Untrusted(String),
}

impl RequestHeaderAuthenticator {
    /// `client_ca_pem` is --requestheader-client-ca-file's content; an empty
    /// `allowed_names` trusts any certificate the CA issued, as upstream.
    pub fn new(
        client_ca_pem: &[u8],
        allowed_names: Vec<String>,
        username_headers: Vec<String>,
        group_headers: Vec<String>,
        extra_prefixes: Vec<String>,
    ) -> Result<Self, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(client_ca_pem) {
            roots
                .add(c.map_err(|e| format!("reading request-header CA: {e}"))?)
                .map_err(|e| format!("request-header CA: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the request-header CA file holds no certificate".into());
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("request-header CA: {e}"))?;
        let clean = |v: Vec<String>| -> Vec<String> {
            v.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
        };
        Ok(RequestHeaderAuthenticator {
            verifier,
            allowed_names: clean(allowed_names),
            username_headers: clean(username_headers),
            group_headers: clean(group_headers),
            extra_prefixes: clean(extra_prefixes).into_iter().map(|p| p.to_ascii_lowercase()).collect(),
        })
    }

    /// The user the headers name, if the presented chain (leaf first) is the
    /// front proxy's.
    pub fn authenticate(
        &self,
        chain: &[rustls_pki_types::CertificateDer<'_>],
        headers: &http::HeaderMap,
    ) -> Result<UserInfo, RequestHeaderRefusal> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(RequestHeaderRefusal::NotApplicable);
        };
        self.verifier
            .verify_client_cert(leaf, intermediates, rustls_pki_types::UnixTime::now())
            .map_err(|e| RequestHeaderRefusal::Untrusted(format!("verifying certificate: {e}")))?;
        let cn = user_from_certificate(leaf.as_ref()).map(|u| u.name).unwrap_or_default();
        if !self.allowed_names.is_empty() && !self.allowed_names.contains(&cn) {
            return Err(RequestHeaderRefusal::Untrusted(format!(
                "x509: subject with cn={cn} is not in the allowed list"
            )));
        }
        let name = self
            .username_headers
            .iter()
            .find_map(|h| headers.get(h.as_str()).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()))
            .ok_or(RequestHeaderRefusal::NotApplicable)?
            .to_string();
        let mut groups: Vec<String> = Vec::new();
        for h in &self.group_headers {
            for v in headers.get_all(h.as_str()) {
                if let Ok(v) = v.to_str() {
                    if !v.is_empty() {
                        groups.push(v.to_string());
                    }
                }
            }
        }
        // Every authenticated user is in system:authenticated (upstream's
        // AuthenticatedGroupAdder).
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        let mut extra: HashMap<String, Vec<String>> = HashMap::new();
        for (header, value) in headers {
            let lower = header.as_str().to_ascii_lowercase();
            let Some(prefix) = self.extra_prefixes.iter().find(|p| lower.starts_with(p.as_str())) else {
                continue;
            };
            let key = path_unescape(&lower[prefix.len()..]);
            if let Ok(v) = value.to_str() {
                extra.entry(key).or_default().push(v.to_string());
            }
        }
        Ok(UserInfo { name, uid: String::new(), groups, extra })
    }

    /// The headers this authenticator reads, which a server removes from a
    /// request once it has read them (upstream's ClearAuthenticationHeaders).
    pub fn clear_headers(&self, headers: &mut http::HeaderMap) {
        for h in self.username_headers.iter().chain(&self.group_headers) {
            headers.remove(h.as_str());
        }
        let extra: Vec<http::HeaderName> = headers
            .keys()
            .filter(|k| self.extra_prefixes.iter().any(|p| k.as_str().to_ascii_lowercase().starts_with(p.as_str())))
            .cloned()
            .collect();
        for k in extra {
            headers.remove(k);
        }
    }
}

/// `--token-auth-file`: CSV lines `token,user,uid[,"group1,group2"]`.
#[derive(Debug, Default, Clone)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                return Err(format!("token file line {}: want at least 3 columns, got {}", n + 1, fields.len()));
            }
            let mut groups: Vec<String> = fields
                .get(3)
                .map(|g| g.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default();
            groups.push("system:authenticated".into());
            tokens.insert(
                fields[0].clone(),
                UserInfo { name: fields[1].clone(), uid: fields[2].clone(), groups, extra: HashMap::new() },
            );
        }
        Ok(TokenFile { tokens })
    }

    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }
}

/// The server's bearer-token authenticators (upstream's token union: the
/// token file, then ServiceAccount JWTs), which the authentication filter
/// hands every request so a handler can check a token on a client's behalf
/// (TokenReview) exactly as a request's would be.
#[derive(Debug, Clone, Default)]
pub struct TokenAuthenticator {
    pub file: Option<Arc<TokenFile>>,
    pub service_accounts: Option<Arc<crate::serviceaccount::ServiceAccountTokens>>,
    /// TokenReviews on the server this one extends, asked last.
    pub reviews: Option<Arc<crate::delegation::TokenReviews>>,
}

/// What upstream's bearer-token authenticator says when no token
/// authenticator knew the token and none had a reason.
pub const INVALID_BEARER_TOKEN: &str = "invalid bearer token";

impl TokenAuthenticator {
    /// The API audiences (--api-audiences): what a request's token must be for.
    pub fn api_audiences(&self) -> &[String] {
        self.service_accounts.as_ref().map(|s| s.api_audiences.as_slice()).unwrap_or(&[])
    }

    /// The user `token` identifies for `audiences` (the API audiences when
    /// empty), and which of them it is good for; or why not, in upstream's
    /// words (the union's errors aggregated).
    pub async fn authenticate(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<crate::serviceaccount::Authenticated, String> {
        let audiences = if audiences.is_empty() { self.api_audiences() } else { audiences };
        // The token file knows no audiences: its tokens are good for the API's
        // (upstream's audience-agnostic wrapper).
        if let Some(user) = self.file.as_ref().and_then(|f| f.authenticate(token)) {
            let api = self.api_audiences();
            let auds: Vec<String> = api.iter().filter(|a| audiences.contains(a)).cloned().collect();
            if api.is_empty() || !auds.is_empty() {
                return Ok(crate::serviceaccount::Authenticated { user, audiences: auds });
            }
        }
        let local = match &self.service_accounts {
            Some(sa) => match sa.authenticate(token, audiences).await {
                Ok(Some(a)) => return Ok(a),
                Ok(None) => None,
                Err(e) => Some(e),
            },
            None => None,
        };
        match (&self.reviews, local) {
            (_, Some(e)) => Err(e),
            (Some(reviews), None) => reviews.authenticate(token, audiences).await,
            (None, None) => Err(INVALID_BEARER_TOKEN.into()),
        }
    }
}

/// The token of an `Authorization: Bearer` header, the scheme compared
/// case-insensitively as upstream; `None` for any other or an empty token.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let mut parts = auth.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// One CSV record with double-quoted fields.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let f = TokenFile::parse("abc,alice,1,\"dev,ops\"\n\ndef,bob,2\n").unwrap();
        let a = f.authenticate("abc").unwrap();
        assert_eq!(a.name, "alice");
        assert_eq!(a.groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(f.authenticate("def").unwrap().groups, vec!["system:authenticated"]);
        assert!(f.authenticate("nope").is_none());
        assert!(TokenFile::parse("only,two").is_err());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::AUTHORIZATION, v.parse().unwrap());
            m
        };
        assert_eq!(bearer_token(&h("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&h("  BEARER abc  ")), Some("abc"));
        assert_eq!(bearer_token(&h("Bearer  abc")), None);
        assert_eq!(bearer_token(&h("Basic abc")), None);
        assert_eq!(bearer_token(&h("Bearer")), None);
    }

    #[test]
    fn extra_keys_are_unescaped_as_go_does() {
        assert_eq!(path_unescape("example.com%2fkey"), "example.com/key");
        assert_eq!(path_unescape("plain+key"), "plain+key");
        assert_eq!(path_unescape("bad%zzkey"), "bad%zzkey");
    }
}
