//! certificates.k8s.io/v1 certificatesigningrequests (upstream
//! pkg/registry/certificates/certificates and pkg/apis/certificates/validation):
//! the PKCS#10 request must parse and carry a valid signature, usages and
//! signerName follow upstream's rules, and after creation the spec is fixed:
//! `/approval` changes only the conditions (Approved, Denied), `/status` only
//! the certificate and the other conditions.
//!
//! As upstream, spec.username, uid, groups and extra are the requesting
//! user's, whatever the client sent.

use base64::Engine;
use serde_json::{json, Value};

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use x509_parser::prelude::FromDer;

use generic_server::authn::UserInfo;
use generic_server::meta;
use generic_server::registry::{Registration, Strategy, Subresource, TableColumn};
use generic_server::status::Cause;

use super::{age, arr_at, str_at};

const APPROVED: &str = "Approved";
const DENIED: &str = "Denied";
const FAILED: &str = "Failed";
const LEGACY_SIGNER: &str = "kubernetes.io/legacy-unknown";

/// Upstream's allValidUsages, sorted as its error lists them.
const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

pub struct CsrStrategy;

pub fn registration() -> Registration {
    Registration::of::<CertificateSigningRequest>(CsrStrategy)
        .short_names(&["csr"])
        .subresource(Subresource::Part("approval"))
        .status()
}

/// What an update path may change, and which problems already stored it
/// tolerates (upstream's certificateValidationOptions).
#[derive(Default)]
struct Options {
    setting_approval: bool,
    setting_certificate: bool,
    both_approved_and_denied: bool,
    legacy_signer: bool,
    duplicate_condition_types: bool,
    empty_condition_type: bool,
    arbitrary_certificate: bool,
    unknown_usages: bool,
    duplicate_usages: bool,
}

impl Options {
    /// Upstream's getValidationOptions: tolerate what `old` already holds.
    fn for_update(new: &Value, old: &Value) -> Options {
        let types: Vec<&str> = conditions(old).iter().map(|c| str_at(c, "/type")).collect();
        let usages = arr_at(old, "/spec/usages");
        let mut seen = std::collections::HashSet::new();
        Options {
            both_approved_and_denied: types.contains(&APPROVED) && types.contains(&DENIED),
            legacy_signer: str_at(old, "/spec/signerName") == LEGACY_SIGNER,
            duplicate_condition_types: !types.iter().all(|t| seen.insert(*t)),
            empty_condition_type: types.contains(&""),
            arbitrary_certificate: certificate(new) == certificate(old)
                || certificate_problem(&certificate(old)).is_some(),
            unknown_usages: usages.iter().any(|u| !USAGES.contains(&u.as_str().unwrap_or(""))),
            duplicate_usages: {
                let mut seen = std::collections::HashSet::new();
                !usages.iter().all(|u| seen.insert(u.as_str().unwrap_or("")))
            },
            ..Options::default()
        }
    }
}

fn conditions(obj: &Value) -> &[Value] {
    arr_at(obj, "/status/conditions")
}

fn of_type<'a>(obj: &'a Value, t: &str) -> Vec<&'a Value> {
    conditions(obj).iter().filter(|c| str_at(c, "/type") == t).collect()
}

/// status.certificate decoded (it travels base64 in JSON).
fn certificate(obj: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(str_at(obj, "/status/certificate")).unwrap_or_default()
}

/// Go's %#v of a []byte, as upstream prints an invalid request.
fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(|x| format!("{x:#x}")).collect();
    format!("[]byte{{{}}}", parts.join(", "))
}

/// Upstream's validateCSR: one CERTIFICATE REQUEST PEM block whose request
/// is signed by its own key.
fn request_problem(pem: &[u8]) -> Option<String> {
    let block = match x509_parser::pem::parse_x509_pem(pem) {
        Ok((_, block)) if block.label == "CERTIFICATE REQUEST" => block,
        _ => return Some("PEM block type must be CERTIFICATE REQUEST".into()),
    };
    match x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents) {
        Ok((_, csr)) => csr.verify_signature().err().map(|e| format!("x509: {e}")),
        Err(e) => Some(format!("x509: malformed certificate request: {e}")),
    }
}

/// Upstream's validateCertificate: empty, or only CERTIFICATE blocks that parse.
fn certificate_problem(pem: &[u8]) -> Option<String> {
    if pem.is_empty() {
        return None;
    }
    let mut blocks = 0;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = match block {
            Ok(b) => b,
            Err(e) => return Some(e.to_string()),
        };
        if block.label != "CERTIFICATE" {
            return Some(format!("only CERTIFICATE PEM blocks are allowed, found {:?}", block.label));
        }
        if let Err(e) = x509_parser::parse_x509_certificate(&block.contents) {
            return Some(format!("x509: {e}"));
        }
        blocks += 1;
    }
    (blocks == 0).then(|| "must contain at least one CERTIFICATE PEM block".into())
}

/// Upstream's ValidateSignerName.
fn signer_name_problems(name: &str, causes: &mut Vec<Cause>) {
    const FIELD: &str = "spec.signerName";
    if name.is_empty() {
        causes.push(Cause::required(FIELD, ""));
        return;
    }
    let Some((domain, path)) = name.split_once('/').filter(|(_, p)| !p.contains('/')) else {
        causes.push(Cause::invalid(
            FIELD,
            &json!(name),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return;
    };
    if domain.len() > 253 {
        causes.push(super::too_long_cause(FIELD, 253));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if let Some((l, m)) = labels.iter().find_map(|l| meta::is_dns1123_label(l).map(|m| (l, m))) {
        causes.push(Cause::invalid(FIELD, &json!(domain), &format!("validating label {l:?}: {m}")));
    }
    if labels.len() < 2 {
        causes.push(Cause::invalid(
            FIELD,
            &json!(domain),
            "should be a domain with at least two segments separated by dots",
        ));
    }
    if let Some((l, m)) = path.split('.').find_map(|l| meta::is_dns1123_subdomain(l).map(|m| (l, m))) {
        causes.push(Cause::invalid(FIELD, &json!(path), &format!("validating label {l:?}: {m}")));
    }
    let max = 253 + (253 + 63 + 1) + 1;
    if name.len() > max {
        causes.push(super::too_long_cause(FIELD, max));
    }
}

/// Upstream's validateCertificateSigningRequest.
fn validate_csr(obj: &Value, opts: &Options) -> Vec<Cause> {
    let mut causes = Vec::new();
    let request = base64::engine::general_purpose::STANDARD.decode(str_at(obj, "/spec/request")).unwrap_or_default();
    if let Some(problem) = request_problem(&request) {
        causes.push(super::invalid_raw("spec.request", &go_bytes(&request), &problem));
    }
    let usages = arr_at(obj, "/spec/usages");
    if usages.is_empty() {
        causes.push(Cause::required("spec.usages", ""));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, u) in usages.iter().enumerate() {
        let s = u.as_str().unwrap_or("");
        if !opts.unknown_usages && !USAGES.contains(&s) {
            causes.push(Cause::not_supported(format!("spec.usages[{i}]"), u, USAGES));
        }
        if !seen.insert(s) && !opts.duplicate_usages {
            causes.push(Cause::duplicate(format!("spec.usages[{i}]"), u));
        }
    }
    let signer = str_at(obj, "/spec/signerName");
    if signer == LEGACY_SIGNER && !opts.legacy_signer {
        causes.push(Cause::invalid(
            "spec.signerName",
            &json!(signer),
            "the legacy signerName is not allowed via this API version",
        ));
    } else {
        signer_name_problems(signer, &mut causes);
    }
    if let Some(s) = obj.pointer("/spec/expirationSeconds").and_then(Value::as_i64).filter(|s| *s < 600) {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &json!(s),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    validate_conditions(obj, opts, &mut causes);
    if !opts.arbitrary_certificate {
        if let Some(p) = certificate_problem(&certificate(obj)) {
            causes.push(Cause::invalid("status.certificate", &json!("<certificate data>"), &p));
        }
    }
    causes
}

fn validate_conditions(obj: &Value, opts: &Options, causes: &mut Vec<Cause>) {
    let mut seen = std::collections::HashSet::new();
    let (mut approved, mut denied) = (false, false);
    for (i, c) in conditions(obj).iter().enumerate() {
        let path = format!("status.conditions[{i}]");
        let t = str_at(c, "/type");
        if t.is_empty() && !opts.empty_condition_type {
            causes.push(Cause::required(format!("{path}.type"), ""));
        }
        let allowed: &[&str] =
            if [APPROVED, DENIED, FAILED].contains(&t) { &["True"] } else { &["False", "True", "Unknown"] };
        let status = str_at(c, "/status");
        if status.is_empty() {
            causes.push(Cause::required(format!("{path}.status"), ""));
        } else if !allowed.contains(&status) {
            causes.push(Cause::not_supported(format!("{path}.status"), &json!(status), allowed));
        }
        if !opts.both_approved_and_denied {
            let clash = match t {
                APPROVED => {
                    approved = true;
                    denied
                }
                DENIED => {
                    denied = true;
                    approved
                }
                _ => false,
            };
            if clash {
                causes.push(Cause::invalid(
                    "status.conditions",
                    &json!(t),
                    "Approved and Denied conditions are mutually exclusive",
                ));
            }
        }
        if !seen.insert(t) && !opts.duplicate_condition_types {
            causes.push(Cause::duplicate(format!("{path}.type"), &json!(t)));
        }
    }
}

/// Upstream's validateCertificateSigningRequestUpdate.
fn validate_csr_update(new: &Value, old: &Value, opts: &Options) -> Vec<Cause> {
    let mut causes = validate_csr(new, opts);
    for t in [APPROVED, DENIED, FAILED] {
        if of_type(new, t).len() < of_type(old, t).len() {
            causes.push(Cause::forbidden(
                "status.conditions",
                &format!("updates may not remove a condition of type {t:?}"),
            ));
        }
    }
    if !opts.setting_approval {
        for t in [APPROVED, DENIED] {
            let (o, n) = (of_type(old, t), of_type(new, t));
            if n.len() > o.len() {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    &format!("updates may not add a condition of type {t:?}"),
                ));
            } else if n.len() == o.len() && n != o {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    &format!("updates may not modify a condition of type {t:?}"),
                ));
            }
        }
    }
    let (nc, oc) = (certificate(new), certificate(old));
    if nc != oc {
        if !opts.setting_certificate {
            causes.push(Cause::forbidden("status.certificate", "updates may not set certificate content"));
        } else if !oc.is_empty() {
            causes.push(Cause::forbidden("status.certificate", "updates may not modify existing certificate content"));
        }
    }
    causes
}

/// Upstream's populateConditionTimestamps: now where missing, but a condition
/// already present with the same type and status keeps its transition time.
fn populate_condition_timestamps(new: &mut Value, old: &Value) {
    let now = meta::now_rfc3339();
    let Some(list) = new.pointer_mut("/status/conditions").and_then(Value::as_array_mut) else { return };
    for c in list.iter_mut() {
        let (t, s) = (str_at(c, "/type").to_string(), str_at(c, "/status").to_string());
        let Some(m) = c.as_object_mut() else { continue };
        if m.get("lastUpdateTime").is_none_or(Value::is_null) {
            m.insert("lastUpdateTime".into(), json!(now));
        }
        if m.get("lastTransitionTime").is_none_or(Value::is_null) {
            let kept = conditions(old)
                .iter()
                .find(|o| {
                    str_at(o, "/type") == t && str_at(o, "/status") == s && !str_at(o, "/lastTransitionTime").is_empty()
                })
                .map(|o| json!(str_at(o, "/lastTransitionTime")));
            m.insert("lastTransitionTime".into(), kept.unwrap_or_else(|| json!(now)));
        }
    }
}

/// Upstream's preserveConditionInstances: the stored conditions of type `t`
/// replace the client's, when the client kept their number.
fn preserve_condition_instances(new: &mut Value, old: &Value, t: &str) {
    let olds: Vec<Value> = of_type(old, t).into_iter().cloned().collect();
    let Some(list) = new.pointer_mut("/status/conditions").and_then(Value::as_array_mut) else { return };
    let idx: Vec<usize> = list.iter().enumerate().filter(|(_, c)| str_at(c, "/type") == t).map(|(i, _)| i).collect();
    if idx.len() == olds.len() {
        for (i, o) in idx.into_iter().zip(olds) {
            list[i] = o;
        }
    }
}

fn set(obj: &mut Value, key: &str, value: Option<&Value>) {
    if let Some(m) = obj.as_object_mut() {
        match value {
            Some(v) => m.insert(key.into(), v.clone()),
            None => m.remove(key),
        };
    }
}

impl Strategy for CsrStrategy {
    fn name_rule(&self) -> generic_server::meta::NameRule {
        // Upstream does not care what certificate requests are called
        // beyond the path-segment rule every name follows.
        generic_server::meta::NameRule::PathSegment
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            for k in ["username", "uid", "groups", "extra"] {
                spec.remove(k);
            }
        }
        super::clear_status(obj);
    }

    fn record_creator(&self, obj: &mut Value, user: Option<&UserInfo>) {
        let (Some(user), Some(spec)) = (user, obj.get_mut("spec").and_then(Value::as_object_mut)) else { return };
        // Empty fields are left out, as Go's omitempty does.
        let fields = [
            ("username", (!user.name.is_empty()).then(|| json!(user.name))),
            ("uid", (!user.uid.is_empty()).then(|| json!(user.uid))),
            ("groups", (!user.groups.is_empty()).then(|| json!(user.groups))),
            ("extra", (!user.extra.is_empty()).then(|| json!(user.extra))),
        ];
        for (key, value) in fields {
            if let Some(v) = value {
                spec.insert(key.into(), v);
            }
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        set(new, "spec", old.get("spec"));
    }

    fn prepare_for_subresource_update(&self, subresource: &str, new: &mut Value, old: &Value) {
        set(new, "spec", old.get("spec"));
        if subresource == "status" {
            preserve_condition_instances(new, old, APPROVED);
            preserve_condition_instances(new, old, DENIED);
            populate_condition_timestamps(new, old);
        } else {
            populate_condition_timestamps(new, old);
            let conds = new.pointer("/status/conditions").cloned();
            let mut status = old.get("status").cloned().unwrap_or_else(|| json!({}));
            set(&mut status, "conditions", conds.as_ref());
            set(new, "status", Some(&status));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_csr(obj, &Options::default())
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        validate_csr_update(new, old, &Options::for_update(new, old))
    }

    fn validate_subresource_update(&self, subresource: &str, new: &Value, old: &Value) -> Vec<Cause> {
        let mut opts = Options::for_update(new, old);
        match subresource {
            "status" => opts.setting_certificate = true,
            _ => opts.setting_approval = true,
        }
        validate_csr_update(new, old, &opts)
    }

    fn field_labels(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("spec.signerName", str_at(obj, "/spec/signerName").to_string())]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        &["spec.signerName"]
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::age_column(),
            TableColumn::new("SignerName", "string", "signerName indicates the requested signer, and is a qualified name.\n\nList/watch requests for CertificateSigningRequests can filter on this field using a \"spec.signerName=NAME\" fieldSelector.\n\nWell-known Kubernetes signers are:\n 1. \"kubernetes.io/kube-apiserver-client\": issues client certificates that can be used to authenticate to kube-apiserver.\n  Requests for this signer are never auto-approved by kube-controller-manager, can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 2. \"kubernetes.io/kube-apiserver-client-kubelet\": issues client certificates that kubelets use to authenticate to kube-apiserver.\n  Requests for this signer can be auto-approved by the \"csrapproving\" controller in kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 3. \"kubernetes.io/kubelet-serving\" issues serving certificates that kubelets use to serve TLS endpoints, which kube-apiserver can connect to securely.\n  Requests for this signer are never auto-approved by kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n\nMore details are available at https://k8s.io/docs/reference/access-authn-authz/certificate-signing-requests/#kubernetes-signers\n\nCustom signerNames can also be specified. The signer defines:\n 1. Trust distribution: how trust (CA bundles) are distributed.\n 2. Permitted subjects: and behavior when a disallowed subject is requested.\n 3. Required, permitted, or forbidden x509 extensions in the request (including whether subjectAltNames are allowed, which types, restrictions on allowed values) and behavior when a disallowed extension is requested.\n 4. Required, permitted, or forbidden key usages / extended key usages.\n 5. Expiration/certificate lifetime: whether it is fixed by the signer, configurable by the admin.\n 6. Whether or not requests for CA certificates are allowed."),
            TableColumn::new("Requestor", "string", "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block. When serialized as JSON or YAML, the data is additionally base64-encoded."),
            TableColumn::new("RequestedDuration", "string", "expirationSeconds is the requested duration of validity of the issued certificate. The certificate signer may issue a certificate with a different validity duration so a client must check the delta between the notBefore and and notAfter fields in the issued certificate to determine the actual duration.\n\nThe v1.22+ in-tree implementations of the well-known Kubernetes signers will honor this field as long as the requested duration is not greater than the maximum duration they will honor per the --cluster-signing-duration CLI flag to the Kubernetes controller manager.\n\nCertificate signers may not honor this field for various reasons:\n\n  1. Old signer that is unaware of the field (such as the in-tree\n     implementations prior to v1.22)\n  2. Signer whose configured maximum is shorter than the requested duration\n  3. Signer whose configured minimum is longer than the requested duration\n\nThe minimum valid value for expirationSeconds is 600, i.e. 10 minutes."),
            TableColumn::new("Condition", "string", "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\"."),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let has = |t: &str| !of_type(obj, t).is_empty();
        let mut condition = if has(DENIED) {
            DENIED.to_string()
        } else if has(APPROVED) {
            APPROVED.to_string()
        } else {
            "Pending".to_string()
        };
        if has(FAILED) {
            condition.push_str(",Failed");
        }
        if !str_at(obj, "/status/certificate").is_empty() {
            condition.push_str(",Issued");
        }
        let signer = str_at(obj, "/spec/signerName");
        let duration = obj
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .map(generic_server::registry::table::human_duration)
            .unwrap_or_else(|| "<none>".into());
        vec![
            json!(meta::name(obj)),
            age(obj),
            json!(if signer.is_empty() { "<none>" } else { signer }),
            json!(str_at(obj, "/spec/username")),
            json!(duration),
            json!(condition),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn csr(pem: &str) -> Value {
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        json!({"metadata": {"name": "c"}, "spec": {"request": b64, "signerName": "example.com/signer", "usages": ["client auth"]}, "status": {}})
    }

    fn messages(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::full_message).collect()
    }

    #[test]
    fn the_requester_is_recorded_whatever_the_client_sent() {
        let s = CsrStrategy;
        let mut obj = csr(&request_pem());
        obj["spec"]["username"] = json!("someone-else");
        obj["spec"]["groups"] = json!(["system:masters"]);
        s.prepare_for_create(&mut obj);
        let user = UserInfo {
            name: "alice".into(),
            groups: vec!["devs".into(), "system:authenticated".into()],
            extra: [("scopes".to_string(), vec!["a".to_string()])].into(),
            ..Default::default()
        };
        s.record_creator(&mut obj, Some(&user));
        let spec = &obj["spec"];
        assert_eq!(
            (&spec["username"], &spec["groups"], &spec["extra"]),
            (&json!("alice"), &json!(["devs", "system:authenticated"]), &json!({"scopes": ["a"]}))
        );
        // No uid: left out, as upstream's omitempty.
        assert!(spec.get("uid").is_none(), "{spec}");
        let mut obj = csr(&request_pem());
        obj["spec"]["username"] = json!("someone-else");
        s.prepare_for_create(&mut obj);
        s.record_creator(&mut obj, None);
        assert!(obj["spec"].get("username").is_none());
    }

    #[test]
    fn requests_are_parsed_and_checked() {
        let s = CsrStrategy;
        assert!(s.validate(&csr(&request_pem())).is_empty(), "{:?}", messages(s.validate(&csr(&request_pem()))));
        let mut bad = csr("nope");
        bad["spec"]["usages"] = json!(["client auth", "flying", "client auth"]);
        bad["spec"]["signerName"] = json!("nodomain");
        bad["spec"]["expirationSeconds"] = json!(60);
        let m = messages(s.validate(&bad));
        assert_eq!(
            m[0],
            "spec.request: Invalid value: []byte{0x6e, 0x6f, 0x70, 0x65}: PEM block type must be CERTIFICATE REQUEST"
        );
        assert!(
            m[1].starts_with("spec.usages[1]: Unsupported value: \"flying\": supported values: \"any\", "),
            "{m:?}"
        );
        assert_eq!(m[2], "spec.usages[2]: Duplicate value: \"client auth\"");
        assert_eq!(
            m[3],
            "spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form 'example.com/signer-name'"
        );
        assert_eq!(
            m[4],
            "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)"
        );
    }

    #[test]
    fn approval_changes_only_conditions_and_status_cannot_approve() {
        let s = CsrStrategy;
        let old = csr(&request_pem());
        let mut new = old.clone();
        new["spec"]["usages"] = json!(["server auth"]);
        new["status"] =
            json!({"conditions": [{"type": "Approved", "status": "True", "reason": "r"}], "certificate": "eA=="});
        s.prepare_for_subresource_update("approval", &mut new, &old);
        assert_eq!(new["spec"], old["spec"]);
        assert!(new["status"].get("certificate").is_none());
        assert!(new["status"]["conditions"][0]["lastUpdateTime"].is_string());
        assert!(s.validate_subresource_update("approval", &new, &old).is_empty());
        assert_eq!(s.table_row(&new)[5], "Approved");

        // Through /status the Approved condition is not the client's to add.
        let mut via_status = old.clone();
        via_status["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        s.prepare_for_subresource_update("status", &mut via_status, &old);
        assert_eq!(
            messages(s.validate_subresource_update("status", &via_status, &old)),
            ["status.conditions: Forbidden: updates may not add a condition of type \"Approved\""]
        );
        // Nor through the object itself, and approval cannot be taken back.
        assert_eq!(s.validate_update(&via_status, &old).len(), 1);
        assert_eq!(
            messages(s.validate_subresource_update("approval", &old, &new)),
            ["status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""]
        );
    }

    #[test]
    fn approved_and_denied_exclude_each_other() {
        let mut c = csr(&request_pem());
        c["status"] =
            json!({"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "False"}]});
        assert_eq!(
            messages(CsrStrategy.validate(&c)),
            [
                "status.conditions[1].status: Unsupported value: \"False\": supported values: \"True\"",
                "status.conditions: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive",
            ]
        );
    }
}
