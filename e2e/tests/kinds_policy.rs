//! The API-policy kinds (rbac.authorization.k8s.io, certificates.k8s.io,
//! admissionregistration.k8s.io, flowcontrol.apiserver.k8s.io) on one shared
//! server: the kind check
//! (e2e::kinds) for each, then what kubectl users do with them: `kubectl
//! create role/clusterrole/rolebinding/clusterrolebinding`, a binding's fixed
//! roleRef, a certificate signing request's life through `kubectl certificate
//! approve|deny` and `/status`, and the flowcontrol objects every cluster
//! starts with.

use base64::Engine;
use e2e::kinds::KindCase;
use e2e::{eventually, table, Server};
use serde_json::{json, Value};

/// A PEM certificate signing request for `cn`, signed by a fresh key.
fn request_pem(cn: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(vec![cn.to_string()]).expect("params");
    params.serialize_request(&key).expect("a request").pem().expect("PEM")
}

fn csr_yaml(name: &str, usages: &str) -> String {
    let request = base64::engine::general_purpose::STANDARD.encode(request_pem(name));
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {request}\n  signerName: example.com/signer\n  expirationSeconds: 86400\n  usages: {usages}\n"
    )
}

#[test]
fn policy_kinds() {
    let mut s = Server::start();
    check_kinds(&s);
    check_admission_kinds(&s);
    kubectl_create_rbac(&s);
    role_ref_is_fixed(&s);
    csr_approval(&s);
    csr_status(&s);
    flowcontrol_bootstrap(&mut s);
}

fn check_kinds(s: &Server) {
    s.check_kind(&KindCase {
        resource: "roles.rbac.authorization.k8s.io",
        kind: "Role",
        namespace: Some("default"),
        valid: "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: reader}\nrules: [{apiGroups: [''], resources: [pods], verbs: [get]}]\n",
        name: "reader",
        defaults: &[("/rules/0/resources", json!(["pods"]))],
        columns: &["NAME", "CREATED AT"],
        wide_columns: &["NAME", "CREATED AT"],
        invalid: "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: noverbs}\nrules: [{apiGroups: [''], resources: [pods]}]\n",
        invalid_name: "noverbs",
        invalid_causes: &["rules[0].verbs: Required value: verbs must contain at least one value"],
    });
    s.check_kind(&KindCase {
        resource: "clusterroles.rbac.authorization.k8s.io",
        kind: "ClusterRole",
        namespace: None,
        valid: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: health}\nrules: [{nonResourceURLs: [/healthz], verbs: [get]}]\n",
        name: "health",
        defaults: &[("/rules/0/nonResourceURLs", json!(["/healthz"]))],
        columns: &["NAME", "CREATED AT"],
        wide_columns: &["NAME", "CREATED AT"],
        invalid: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: mixed}\nrules: [{nonResourceURLs: [/healthz], resources: [pods], apiGroups: [''], verbs: [get]}]\n",
        invalid_name: "mixed",
        invalid_causes: &["rules[0].nonResourceURLs", "rules cannot apply to both regular resources and non-resource URLs"],
    });
    s.check_kind(&KindCase {
        resource: "rolebindings.rbac.authorization.k8s.io",
        kind: "RoleBinding",
        namespace: Some("default"),
        valid: "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: readers}\nroleRef: {kind: Role, name: reader}\nsubjects: [{kind: User, name: alice}]\n",
        name: "readers",
        defaults: &[
            ("/roleRef/apiGroup", json!("rbac.authorization.k8s.io")),
            ("/subjects/0/apiGroup", json!("rbac.authorization.k8s.io")),
        ],
        columns: &["NAME", "ROLE", "AGE"],
        wide_columns: &["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
        invalid: "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: badref}\nroleRef: {kind: Secret, name: reader}\n",
        invalid_name: "badref",
        invalid_causes: &["roleRef.kind: Unsupported value: \"Secret\": supported values: \"Role\", \"ClusterRole\""],
    });
    s.check_kind(&KindCase {
        resource: "clusterrolebindings.rbac.authorization.k8s.io",
        kind: "ClusterRoleBinding",
        namespace: None,
        valid: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: health}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: health}\nsubjects: [{kind: Group, name: everyone}]\n",
        name: "health",
        defaults: &[("/subjects/0/apiGroup", json!("rbac.authorization.k8s.io"))],
        columns: &["NAME", "ROLE", "AGE"],
        wide_columns: &["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
        invalid: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: nons}\nroleRef: {kind: ClusterRole, name: health}\nsubjects: [{kind: ServiceAccount, name: robot}]\n",
        invalid_name: "nons",
        invalid_causes: &["subjects[0].namespace: Required value"],
    });
    s.check_kind(&KindCase {
        resource: "flowschemas.flowcontrol.apiserver.k8s.io",
        kind: "FlowSchema",
        namespace: None,
        valid: "apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: FlowSchema\nmetadata: {name: batch-jobs}\nspec:\n  priorityLevelConfiguration: {name: workload-low}\n  distinguisherMethod: {type: ByUser}\n  rules:\n  - subjects: [{kind: Group, group: {name: batch}}]\n    resourceRules: [{verbs: [list], apiGroups: [batch], resources: [jobs], namespaces: ['*']}]\n",
        name: "batch-jobs",
        defaults: &[("/spec/matchingPrecedence", json!(1000)), ("/metadata/generation", json!(1))],
        columns: &["NAME", "PRIORITYLEVEL", "MATCHINGPRECEDENCE", "DISTINGUISHERMETHOD", "AGE", "MISSINGPL"],
        wide_columns: &["NAME", "PRIORITYLEVEL", "MATCHINGPRECEDENCE", "DISTINGUISHERMETHOD", "AGE", "MISSINGPL"],
        invalid: "apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: FlowSchema\nmetadata: {name: first}\nspec:\n  matchingPrecedence: 1\n  priorityLevelConfiguration: {name: workload-low}\n  rules: [{subjects: [{kind: User, user: {name: u}}]}]\n",
        invalid_name: "first",
        invalid_causes: &[
            "spec.matchingPrecedence: Invalid value: 1: only the schema named 'exempt' may have matchingPrecedence 1",
            "spec.rules[0]: Required value: at least one of resourceRules and nonResourceRules has to be non-empty",
        ],
    });
    s.check_kind(&KindCase {
        resource: "prioritylevelconfigurations.flowcontrol.apiserver.k8s.io",
        kind: "PriorityLevelConfiguration",
        namespace: None,
        valid: "apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: PriorityLevelConfiguration\nmetadata: {name: batch}\nspec:\n  type: Limited\n  limited: {limitResponse: {type: Queue, queuing: {queues: 16}}}\n",
        name: "batch",
        defaults: &[
            ("/spec/limited/nominalConcurrencyShares", json!(30)),
            ("/spec/limited/lendablePercent", json!(0)),
            ("/spec/limited/limitResponse/queuing", json!({"queues": 16, "handSize": 8, "queueLengthLimit": 50})),
        ],
        columns: &["NAME", "TYPE", "NOMINALCONCURRENCYSHARES", "QUEUES", "HANDSIZE", "QUEUELENGTHLIMIT", "AGE"],
        wide_columns: &["NAME", "TYPE", "NOMINALCONCURRENCYSHARES", "QUEUES", "HANDSIZE", "QUEUELENGTHLIMIT", "AGE"],
        invalid: "apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: PriorityLevelConfiguration\nmetadata: {name: noqueue}\nspec:\n  type: Limited\n  limited: {limitResponse: {type: Queue}}\n",
        invalid_name: "noqueue",
        invalid_causes: &[
            "spec.limited.limitResponse.queuing: Required value: must not be empty if limited.limitResponse.type is Limited",
        ],
    });
    let valid = csr_yaml("kind-check", "[client auth]");
    s.check_kind(&KindCase {
        resource: "certificatesigningrequests.certificates.k8s.io",
        kind: "CertificateSigningRequest",
        namespace: None,
        valid: &valid,
        name: "kind-check",
        defaults: &[("/status", json!({})), ("/spec/signerName", json!("example.com/signer"))],
        columns: &["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"],
        wide_columns: &["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"],
        invalid: &csr_yaml("nousages", "[]").replace("example.com/signer", "kubernetes.io/legacy-unknown"),
        invalid_name: "nousages",
        invalid_causes: &[
            "spec.usages: Required value",
            "spec.signerName: Invalid value: \"kubernetes.io/legacy-unknown\": the legacy signerName is not allowed via this API version",
        ],
    });
}

fn check_admission_kinds(s: &Server) {
    const HOOK: &str = "- name: check.example.com\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  clientConfig: {service: {name: hook, namespace: default}}\n  rules: [{operations: [CREATE], apiGroups: [''], apiVersions: [v1], resources: [pods]}]\n";
    let hook_defaults = [
        ("/webhooks/0/failurePolicy", json!("Fail")),
        ("/webhooks/0/matchPolicy", json!("Equivalent")),
        ("/webhooks/0/timeoutSeconds", json!(10)),
        ("/webhooks/0/namespaceSelector", json!({})),
        ("/webhooks/0/objectSelector", json!({})),
        ("/webhooks/0/rules/0/scope", json!("*")),
        ("/webhooks/0/clientConfig/service/port", json!(443)),
    ];
    let valid = format!("apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: checks}}\nwebhooks:\n{HOOK}");
    s.check_kind(&KindCase {
        resource: "validatingwebhookconfigurations.admissionregistration.k8s.io",
        kind: "ValidatingWebhookConfiguration",
        namespace: None,
        valid: &valid,
        name: "checks",
        defaults: &hook_defaults,
        columns: &["NAME", "WEBHOOKS", "AGE"],
        wide_columns: &["NAME", "WEBHOOKS", "AGE"],
        invalid: "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: plain}\nwebhooks:\n- name: check.example.com\n  sideEffects: None\n  admissionReviewVersions: [v1]\n  clientConfig: {url: 'http://hook.example.com/x?debug=1'}\n",
        invalid_name: "plain",
        invalid_causes: &[
            "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]",
            "webhooks[0].clientConfig.url: Invalid value: \"debug=1\": query parameters are not permitted in the URL",
        ],
    });
    let mut mutating_defaults = hook_defaults.to_vec();
    mutating_defaults.push(("/webhooks/0/reinvocationPolicy", json!("Never")));
    let valid = format!("apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: mutators}}\nwebhooks:\n{HOOK}");
    s.check_kind(&KindCase {
        resource: "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        kind: "MutatingWebhookConfiguration",
        namespace: None,
        valid: &valid,
        name: "mutators",
        defaults: &mutating_defaults,
        columns: &["NAME", "WEBHOOKS", "AGE"],
        wide_columns: &["NAME", "WEBHOOKS", "AGE"],
        invalid: &valid.replace("name: mutators", "name: sideways").replace("sideEffects: None", "sideEffects: Some"),
        invalid_name: "sideways",
        invalid_causes: &[
            "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"",
        ],
    });
    s.check_kind(&KindCase {
        resource: "validatingadmissionpolicies.admissionregistration.k8s.io",
        kind: "ValidatingAdmissionPolicy",
        namespace: None,
        valid: "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: small}\nspec:\n  matchConstraints:\n    resourceRules: [{operations: [CREATE, UPDATE], apiGroups: [apps], apiVersions: [v1], resources: [deployments]}]\n  validations: [{expression: 'object.spec.replicas <= 5'}]\n",
        name: "small",
        defaults: &[
            ("/spec/failurePolicy", json!("Fail")),
            ("/spec/matchConstraints/matchPolicy", json!("Equivalent")),
            ("/spec/matchConstraints/namespaceSelector", json!({})),
            ("/spec/matchConstraints/resourceRules/0/scope", json!("*")),
        ],
        columns: &["NAME", "VALIDATIONS", "PARAMKIND", "AGE"],
        wide_columns: &["NAME", "VALIDATIONS", "PARAMKIND", "AGE"],
        invalid: "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: empty}\nspec:\n  matchConstraints:\n    resourceRules: [{operations: [CREATE], apiGroups: [apps], apiVersions: [v1], resources: [deployments]}]\n",
        invalid_name: "empty",
        invalid_causes: &["spec.validations: Required value: validations or auditAnnotations must contain at least one item"],
    });
    s.check_kind(&KindCase {
        resource: "validatingadmissionpolicybindings.admissionregistration.k8s.io",
        kind: "ValidatingAdmissionPolicyBinding",
        namespace: None,
        valid: "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: small-everywhere}\nspec:\n  policyName: small\n  validationActions: [Deny]\n  matchResources: {namespaceSelector: {matchLabels: {env: prod}}}\n",
        name: "small-everywhere",
        defaults: &[("/spec/matchResources/matchPolicy", json!("Equivalent")), ("/spec/matchResources/objectSelector", json!({}))],
        columns: &["NAME", "POLICYNAME", "PARAMREF", "AGE"],
        wide_columns: &["NAME", "POLICYNAME", "PARAMREF", "AGE"],
        invalid: "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: loud}\nspec:\n  policyName: small\n  validationActions: [Deny, Warn]\n",
        invalid_name: "loud",
        invalid_causes: &["spec.validationActions", "must not contain both Deny and Warn"],
    });
    // They are api-extensions, as upstream lists them.
    let out = s.kubectl(&["get", "api-extensions", "-o", "name"]);
    for name in [
        "validatingwebhookconfiguration.admissionregistration.k8s.io/checks",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/mutators",
        "validatingadmissionpolicy.admissionregistration.k8s.io/small",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/small-everywhere",
    ] {
        assert!(out.contains(name), "kubectl get api-extensions lacks {name}:\n{out}");
    }
}

/// `kubectl create role|clusterrole|rolebinding|clusterrolebinding` build the
/// objects a real cluster stores and prints.
fn kubectl_create_rbac(s: &Server) {
    s.kubectl(&["create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", "default"]);
    let role = s.kubectl_json(&["get", "role", "pod-reader", "-n", "default"]);
    assert_eq!(role["rules"], json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]), "{role}");

    s.kubectl(&["create", "clusterrole", "deploy-reader", "--verb=get", "--resource=deployments.apps"]);
    let cr = s.kubectl_json(&["get", "clusterrole", "deploy-reader"]);
    assert_eq!(cr["rules"], json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]), "{cr}");

    s.kubectl(&[
        "create",
        "rolebinding",
        "pod-readers",
        "--role=pod-reader",
        "--user=alice",
        "--group=devs",
        "--serviceaccount=default:robot",
        "-n",
        "default",
    ]);
    let wide = s.kubectl(&["get", "rolebinding", "pod-readers", "-n", "default", "-o", "wide"]);
    let row = &table(&wide)[0];
    assert_eq!(row["ROLE"], "Role/pod-reader", "{wide}");
    assert_eq!((row["USERS"].as_str(), row["GROUPS"].as_str()), ("alice", "devs"), "{wide}");
    assert_eq!(row["SERVICEACCOUNTS"], "default/robot", "{wide}");

    s.kubectl(&["create", "clusterrolebinding", "deploy-readers", "--clusterrole=deploy-reader", "--user=bob"]);
    let crb = s.kubectl_json(&["get", "clusterrolebinding", "deploy-readers"]);
    assert_eq!(
        crb["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "deploy-reader"})
    );
    assert_eq!(crb["subjects"], json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]));
    let out = s.kubectl(&["get", "clusterrolebinding", "deploy-readers"]);
    assert_eq!(table(&out)[0]["ROLE"], "ClusterRole/deploy-reader", "{out}");
}

/// A binding's roleRef cannot change; its subjects can.
fn role_ref_is_fixed(s: &Server) {
    s.kubectl_err(
        &["patch", "rolebinding", "pod-readers", "-n", "default", "--type=merge", "-p", r#"{"roleRef":{"name":"other"}}"#],
        None,
        &["roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"other\"}: cannot change roleRef"],
    );
    s.kubectl(&[
        "patch",
        "rolebinding",
        "pod-readers",
        "-n",
        "default",
        "--type=merge",
        "-p",
        r#"{"subjects":[{"kind":"User","name":"carol"}]}"#,
    ]);
    let rb = s.kubectl_json(&["get", "rolebinding", "pod-readers", "-n", "default"]);
    assert_eq!(rb["subjects"], json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]));
    assert_eq!(rb["roleRef"]["name"], "pod-reader");
}

fn csr_row(s: &Server, name: &str) -> std::collections::BTreeMap<String, String> {
    let out = s.kubectl(&["get", "csr", name]);
    table(&out).into_iter().next().unwrap_or_else(|| panic!("no row for {name}:\n{out}"))
}

/// `kubectl certificate approve|deny` go through /approval; the main
/// resource cannot approve, and approval cannot be taken back.
fn csr_approval(s: &Server) {
    s.create(&csr_yaml("to-approve", "[client auth, digital signature]"));
    let row = csr_row(s, "to-approve");
    assert_eq!((row["CONDITION"].as_str(), row["SIGNERNAME"].as_str()), ("Pending", "example.com/signer"), "{row:?}");
    assert_eq!(row["REQUESTEDDURATION"], "24h", "{row:?}");

    // A client cannot approve through the object itself: its status is kept.
    let mut obj = s.kubectl_json(&["get", "csr", "to-approve"]);
    obj["status"] = json!({"conditions": [{"type": "Approved", "status": "True", "reason": "Sneaky"}]});
    obj["spec"]["usages"] = json!(["server auth"]);
    s.kubectl_stdin(&["replace", "-f", "-"], Some(&obj.to_string()));
    let kept = s.kubectl_json(&["get", "csr", "to-approve"]);
    assert_eq!(kept["status"], json!({}), "{kept}");
    assert_eq!(kept["spec"]["usages"], json!(["client auth", "digital signature"]), "the spec is fixed: {kept}");

    let out = s.kubectl(&["certificate", "approve", "to-approve"]);
    assert!(out.contains("approved"), "{out}");
    assert_eq!(csr_row(s, "to-approve")["CONDITION"], "Approved");
    let approved = s.kubectl_json(&["get", "csr", "to-approve"]);
    let cond = &approved["status"]["conditions"][0];
    assert_eq!((cond["type"].as_str(), cond["status"].as_str()), (Some("Approved"), Some("True")), "{approved}");
    assert_eq!(cond["reason"], "KubectlApprove");
    assert!(cond["lastUpdateTime"].is_string() && cond["lastTransitionTime"].is_string(), "{cond}");

    // kubectl itself refuses to deny an approved request; the server does too.
    s.kubectl_err(&["certificate", "deny", "to-approve", "--force"], None, &["is already Approved"]);
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/to-approve/approval";
    let mut both = s.request("GET", path, None).json();
    both["status"]["conditions"] = json!([both["status"]["conditions"][0], {"type": "Denied", "status": "True"}]);
    let v = s.request("PUT", path, Some(&both)).assert_status(422, "Invalid");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(
            "status.conditions: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"
        ),
        "{msg}"
    );
    s.create(&csr_yaml("to-deny", "[client auth]"));
    s.kubectl(&["certificate", "deny", "to-deny"]);
    assert_eq!(csr_row(s, "to-deny")["CONDITION"], "Denied");

    // Discovery lists the subresource; spec.signerName selects.
    let group = s.raw("/apis/certificates.k8s.io/v1");
    let approval = group["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "certificatesigningrequests/approval").cloned());
    assert_eq!(approval.map(|a| a["verbs"].clone()), Some(json!(["get", "patch", "update"])), "{group}");
    let out = s.kubectl(&["get", "csr", "--field-selector", "spec.signerName=example.com/signer", "-o", "name"]);
    assert!(out.contains("to-deny") && out.contains("to-approve"), "{out}");
    let none = s.kubectl(&["get", "csr", "--field-selector", "spec.signerName=other.io/x", "-o", "name"]);
    assert!(none.trim().is_empty(), "{none}");
}

/// /status sets the certificate (once) but not approval.
fn csr_status(s: &Server) {
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/to-approve/status";
    let mut obj: Value = s.request("GET", path, None).json();
    let cert = rcgen::generate_simple_self_signed(vec!["client".to_string()]).expect("a certificate").cert.pem();
    obj["status"]["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(&cert));
    obj["status"]["conditions"][0]["reason"] = json!("Changed");
    let r = s.request("PUT", path, Some(&obj));
    assert_eq!(r.status, 200, "{}", r.text());
    let issued = r.json();
    assert_eq!(issued["status"]["conditions"][0]["reason"], "KubectlApprove", "approval is kept: {issued}");
    assert_eq!(csr_row(s, "to-approve")["CONDITION"], "Approved,Issued");

    let mut again = issued.clone();
    again["status"]["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(request_pem("x")));
    let v = s.request("PUT", path, Some(&again)).assert_status(422, "Invalid");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(msg.contains("updates may not modify existing certificate content"), "{msg}");

    let mut add = issued;
    add["status"]["conditions"] = json!([add["status"]["conditions"][0], {"type": "Denied", "status": "True"}]);
    let v = s.request("PUT", path, Some(&add)).assert_status(422, "Invalid");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("updates may not add a condition of type \\\"Denied\\\"")
            || msg.contains("updates may not add a condition of type \"Denied\""),
        "{msg}"
    );
}

/// Every cluster starts with upstream's mandatory and suggested APF objects
/// and keeps them as upstream's config producer does: a deleted one comes
/// back, a changed mandatory one or one whose autoupdate annotation is "true"
/// gets its spec back, an annotated object that is none of them is removed.
fn flowcontrol_bootstrap(s: &mut Server) {
    let out = s.kubectl(&["get", "flowschemas"]);
    let rows = table(&out);
    let find = |name: &str| rows.iter().find(|r| r["NAME"] == name).cloned();
    let exempt = find("exempt").unwrap_or_else(|| panic!("no exempt flowschema:\n{out}"));
    assert_eq!((exempt["PRIORITYLEVEL"].as_str(), exempt["MATCHINGPRECEDENCE"].as_str()), ("exempt", "1"), "{out}");
    assert_eq!(exempt["DISTINGUISHERMETHOD"], "<none>");
    let catch_all = find("catch-all").unwrap_or_else(|| panic!("no catch-all flowschema:\n{out}"));
    assert_eq!(
        (catch_all["MATCHINGPRECEDENCE"].as_str(), catch_all["DISTINGUISHERMETHOD"].as_str()),
        ("10000", "ByUser")
    );
    for name in [
        "probes",
        "system-leader-election",
        "endpoint-controller",
        "workload-leader-election",
        "system-node-high",
        "system-nodes",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-system-service-accounts",
        "service-accounts",
        "global-default",
    ] {
        assert!(find(name).is_some(), "flowschema {name} missing:\n{out}");
    }
    let pls = s.kubectl(&["get", "prioritylevelconfigurations"]);
    let pl_rows = table(&pls);
    let exempt_pl = pl_rows.iter().find(|r| r["NAME"] == "exempt").unwrap_or_else(|| panic!("{pls}"));
    assert_eq!((exempt_pl["TYPE"].as_str(), exempt_pl["QUEUES"].as_str()), ("Exempt", "<none>"), "{pls}");
    let global = pl_rows.iter().find(|r| r["NAME"] == "global-default").unwrap_or_else(|| panic!("{pls}"));
    assert_eq!(
        (global["NOMINALCONCURRENCYSHARES"].as_str(), global["QUEUES"].as_str(), global["HANDSIZE"].as_str()),
        ("20", "128", "6"),
        "{pls}"
    );
    let fs = s.kubectl_json(&["get", "flowschema", "global-default"]);
    assert_eq!(fs["metadata"]["annotations"]["apf.kubernetes.io/autoupdate-spec"], "true", "{fs}");

    // The configuration is kept while the server runs: a changed suggested
    // object whose annotation is "true" gets its spec back, deleted bootstrap
    // objects (suggested or mandatory) come back.
    let precedence =
        |s: &Server, name: &str| s.kubectl(&["get", "flowschema", name, "-o", "jsonpath={.spec.matchingPrecedence}"]);
    let patch_precedence = |s: &Server, name: &str, p: u32| {
        let body = format!(r#"{{"spec":{{"matchingPrecedence":{p}}}}}"#);
        s.kubectl(&["patch", "flowschema", name, "--type=merge", "-p", &body]);
    };
    patch_precedence(s, "global-default", 9800);
    eventually("global-default's spec is put back", || precedence(s, "global-default") == "9900");
    s.kubectl(&["delete", "flowschema", "probes"]);
    s.kubectl(&["delete", "flowschema", "catch-all"]);
    s.kubectl(&["delete", "prioritylevelconfiguration", "exempt"]);
    eventually("deleted bootstrap objects are recreated", || {
        s.run(&["get", "flowschema", "probes", "catch-all"], None).code == 0
            && s.run(&["get", "prioritylevelconfiguration", "exempt"], None).code == 0
    });
    // Mandatory objects are put back whatever their annotation says.
    s.kubectl(&["annotate", "--overwrite", "flowschema", "catch-all", "apf.kubernetes.io/autoupdate-spec=false"]);
    patch_precedence(s, "catch-all", 9000);
    eventually("catch-all is put back and annotated true", || {
        let fs = s.kubectl_json(&["get", "flowschema", "catch-all"]);
        fs["spec"]["matchingPrecedence"] == 10000
            && fs["metadata"]["annotations"]["apf.kubernetes.io/autoupdate-spec"] == "true"
    });
    // An object that says it is kept by the bootstrap configuration but is
    // not part of it is removed; one without the annotation is the user's.
    let mine = |name: &str, annotations: &str| {
        format!("apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: FlowSchema\nmetadata: {{name: {name}, annotations: {{{annotations}}}}}\nspec: {{priorityLevelConfiguration: {{name: global-default}}, matchingPrecedence: 5000}}\n")
    };
    s.create(&mine("claims-bootstrap", "apf.kubernetes.io/autoupdate-spec: 'true'"));
    s.create(&mine("users-own", ""));
    eventually("the dangling flowschema is removed", || {
        s.run(&["get", "flowschema", "claims-bootstrap"], None).code != 0
    });
    s.kubectl(&["get", "flowschema", "users-own"]);
    // A suggested object marked as the user's keeps the user's spec, at start too.
    s.kubectl(&["annotate", "--overwrite", "flowschema", "global-default", "apf.kubernetes.io/autoupdate-spec=false"]);
    patch_precedence(s, "global-default", 9800);
    s.restart();
    assert_eq!(precedence(s, "global-default"), "9800");
}
