//! The certificates.k8s.io plugins (upstream plugin/pkg/admission/
//! certificates): who may act for a signer.
//!
//! CertificateApproval: approving or denying a request (`/approval`) needs
//! the `approve` verb on the `signers` resource named by its signerName, or
//! on the signer's domain wildcard (`example.com/*`).
//! CertificateSigning: writing the certificate or conditions (`/status`)
//! needs `sign` the same way.
//! CertificateSubjectRestriction: no request for the
//! `kubernetes.io/kube-apiserver-client` signer may name the
//! `system:masters` group, which would be a key to everything.
//!
//! ClusterTrustBundleAttest has nothing to guard: ClusterTrustBundle is not
//! served (its API is beta and off by default in 1.33).

use std::sync::Arc;

use base64::Engine;
use x509_parser::prelude::FromDer;

use generic_server::authn::UserInfo;
use generic_server::authz::{Attributes, Authorizer};
use generic_server::registry::{AdmissionAttributes, Operation, Validating};
use generic_server::status::StatusError;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use crate::registry::str_at;

const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// Upstream's IsAuthorizedForSignerName: `verb` on the signer itself, or on
/// every signer of its domain.
fn authorized_for_signer(authz: &dyn Authorizer, user: &UserInfo, verb: &str, signer: &str) -> bool {
    let ask = |name: &str| {
        let mut attrs = Attributes::resource(user, verb, "certificates.k8s.io", "signers", "", name);
        attrs.api_version = "*";
        authz.authorize(&attrs).allowed()
    };
    let domain = signer.split('/').next().unwrap_or("");
    ask(signer) || ask(&format!("{domain}/*"))
}

/// CertificateApproval or CertificateSigning: the subresource it guards and
/// the verb it asks for.
pub struct SignerCheck {
    authorizer: Arc<dyn Authorizer>,
    subresource: &'static str,
    verb: &'static str,
}

impl SignerCheck {
    pub fn approval(authorizer: Arc<dyn Authorizer>) -> Self {
        SignerCheck { authorizer, subresource: "approval", verb: "approve" }
    }

    pub fn signing(authorizer: Arc<dyn Authorizer>) -> Self {
        SignerCheck { authorizer, subresource: "status", verb: "sign" }
    }
}

#[async_trait::async_trait]
impl Validating for SignerCheck {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        if a.operation != Operation::Update || !a.is::<CertificateSigningRequest>() || a.subresource != self.subresource
        {
            return Ok(());
        }
        // The server's own writes are not a user's.
        let (Some(user), Some(old)) = (a.user, a.old) else { return Ok(()) };
        if self.verb == "sign" {
            // Signing is only what changes the certificate or conditions.
            let unchanged = |p: &str| a.object.and_then(|o| o.pointer(p)) == old.pointer(p);
            if unchanged("/status/certificate") && unchanged("/status/conditions") {
                return Ok(());
            }
        }
        // The stored signer counts: an attempt to change it is invalid anyway.
        let signer = str_at(old, "/spec/signerName");
        if authorized_for_signer(&*self.authorizer, user, self.verb, signer) {
            return Ok(());
        }
        Err(a.forbidden(&format!("user not permitted to {} requests with signerName {signer:?}", self.verb)))
    }
}

/// The organizations of a PEM certificate request's subject.
fn requested_organizations(pem: &[u8]) -> Result<Vec<String>, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| "PEM block type must be CERTIFICATE REQUEST")?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let (_, request) = x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| e.to_string())?;
    let subject = &request.certification_request_info.subject;
    Ok(subject.iter_organization().filter_map(|o| o.as_str().ok()).map(str::to_string).collect())
}

/// The CertificateSubjectRestriction plugin; see the module doc.
pub struct CertificateSubjectRestriction;

#[async_trait::async_trait]
impl Validating for CertificateSubjectRestriction {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        if a.operation != Operation::Create || !a.is_main::<CertificateSigningRequest>() {
            return Ok(());
        }
        let Some(csr) = a.object.filter(|o| str_at(o, "/spec/signerName") == KUBE_APISERVER_CLIENT) else {
            return Ok(());
        };
        let pem = base64::engine::general_purpose::STANDARD.decode(str_at(csr, "/spec/request")).unwrap_or_default();
        let organizations =
            requested_organizations(&pem).map_err(|e| a.forbidden(&format!("failed to parse CSR: {e}")))?;
        if organizations.iter().any(|o| o == "system:masters") {
            return Err(a.forbidden(&format!(
                "use of {KUBE_APISERVER_CLIENT} signer with system:masters group is not allowed"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use generic_server::authz::Verdict;

    /// Allows exactly the named signers.
    struct Grants(Vec<&'static str>);

    impl Authorizer for Grants {
        fn authorize(&self, a: &Attributes<'_>) -> Verdict {
            let granted = a.resource == "signers" && a.api_version == "*" && self.0.contains(&a.name);
            if granted {
                Verdict::allow("")
            } else {
                Verdict::no_opinion("")
            }
        }
    }

    #[test]
    fn a_signer_is_granted_by_name_or_domain_wildcard() {
        let user = UserInfo { name: "alice".into(), ..Default::default() };
        let exact = Grants(vec!["example.com/a"]);
        assert!(authorized_for_signer(&exact, &user, "approve", "example.com/a"));
        assert!(!authorized_for_signer(&exact, &user, "approve", "example.com/b"));
        let wildcard = Grants(vec!["example.com/*"]);
        assert!(authorized_for_signer(&wildcard, &user, "sign", "example.com/b"));
        assert!(!authorized_for_signer(&wildcard, &user, "sign", "example.org/b"));
    }

    #[test]
    fn organizations_come_from_the_request_subject() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:masters");
        params.distinguished_name.push(rcgen::DnType::CommonName, "eve");
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        assert_eq!(requested_organizations(pem.as_bytes()).unwrap(), ["system:masters"]);
        assert!(requested_organizations(b"not pem").is_err());
    }
}
