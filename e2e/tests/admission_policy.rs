//! ValidatingAdmissionPolicy end to end: policies and bindings written with
//! kubectl take effect within a second; Deny answers upstream's Status
//! (reason and code from the validation, message naming policy and binding),
//! Warn a Warning header, Audit an audit annotation; params come from a
//! ConfigMap and from a custom resource; messageExpression, bad CEL refused
//! with field paths, status.typeChecking; and a CRD rule whose string growth
//! is over the cost budget refused at write.
//!
//! One server; each policy selects its own namespace by label, so the steps
//! do not see each other's policies.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{eventually, Server};
use serde_json::{json, Value};

const AUDIT_POLICY: &str =
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  namespaces: [\"vap-audit\"]\n";

/// A policy on configmaps in namespaces labelled `vap: <ns>`.
fn configmap_policy(name: &str, ns: &str, extra: Value) -> Value {
    let mut p = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"matchConstraints": {
            "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"vap": ns}}}}});
    for (k, v) in extra.as_object().into_iter().flatten() {
        p["spec"][k] = v.clone();
    }
    p
}

fn binding(name: &str, policy: &str, actions: &[&str], param_ref: Option<Value>) -> Value {
    let mut b = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name}, "spec": {"policyName": policy, "validationActions": actions}});
    if let Some(pr) = param_ref {
        b["spec"]["paramRef"] = pr;
    }
    b
}

fn namespace(s: &Server, ns: &str) {
    s.kubectl(&["create", "namespace", ns]);
    s.kubectl(&["label", "namespace", ns, &format!("vap={ns}")]);
}

fn apply(s: &Server, v: &Value) {
    s.apply(&v.to_string());
}

fn post_configmap(s: &Server, ns: &str, name: &str, data: Value) -> e2e::HttpResponse {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data});
    s.request("POST", &format!("/api/v1/namespaces/{ns}/configmaps"), Some(&cm))
}

/// Waits until a create is refused (the policy took effect); returns the refusal.
#[track_caller]
fn refused(s: &Server, ns: &str, name: &str, data: Value) -> e2e::HttpResponse {
    let start = Instant::now();
    loop {
        let r = post_configmap(s, ns, name, data.clone());
        if r.status >= 400 {
            return r;
        }
        s.kubectl(&["delete", "configmap", "-n", ns, name]);
        assert!(start.elapsed() < Duration::from_secs(10), "the policy never took effect in {ns}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn audit_annotations(log: &Path, ns: &str, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find_map(|e| {
        let create = e["verb"] == "create" && e["objectRef"]["namespace"] == ns && e["stage"] == "ResponseComplete";
        let named = e["requestURI"].as_str().is_some_and(|u| u.contains("/configmaps"))
            && e["responseStatus"]["code"] == 201
            && e["objectRef"]["name"].as_str().is_none_or(|n| n == name);
        (create && named && e.get("annotations").is_some()).then(|| e["annotations"].clone())
    })
}

#[test]
fn validating_admission_policies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy_file = dir.path().join("audit.yaml");
    std::fs::write(&policy_file, AUDIT_POLICY).expect("writing the audit policy");
    let log = dir.path().join("audit.log");
    let s = Server::start_with(&[
        "--audit-policy-file",
        &policy_file.display().to_string(),
        "--audit-log-path",
        &log.display().to_string(),
    ]);

    // Deny, with upstream's default reason (Invalid, 422) and message.
    namespace(&s, "vap-deny");
    apply(
        &s,
        &configmap_policy(
            "size-limit",
            "vap-deny",
            json!({
        "validations": [{"expression": "!has(object.data) || size(object.data) <= 1", "message": "at most one key"}]}),
        ),
    );
    apply(&s, &binding("size-limit-binding", "size-limit", &["Deny"], None));
    let r = refused(&s, "vap-deny", "big", json!({"a": "1", "b": "2"}));
    let st = r.assert_status(422, "Invalid");
    let msg =
        "ValidatingAdmissionPolicy 'size-limit' with binding 'size-limit-binding' denied request: at most one key";
    assert_eq!(st["message"], format!("configmaps \"big\" is forbidden: {msg}"), "{st}");
    assert_eq!(st["details"]["causes"], json!([{"message": msg}]), "{st}");
    assert_eq!(post_configmap(&s, "vap-deny", "small", json!({"a": "1"})).status, 201);
    assert_eq!(
        post_configmap(&s, "default", "elsewhere", json!({"a": "1", "b": "2"})).status,
        201,
        "other namespaces are not selected"
    );
    let err = s.kubectl_err(
        &["create", "configmap", "-n", "vap-deny", "two", "--from-literal=a=1", "--from-literal=b=2"],
        None,
        &[msg],
    );
    assert!(err.contains("is forbidden"), "{err}");

    // messageExpression and a reason (Forbidden, 403); a dry run is judged too.
    namespace(&s, "vap-msg");
    apply(
        &s,
        &configmap_policy(
            "no-secrets",
            "vap-msg",
            json!({
        "validations": [{"expression": "!has(object.data) || !('password' in object.data)",
            "messageExpression": "'configmap ' + object.metadata.name + ' must not hold a password'", "reason": "Forbidden"}]}),
        ),
    );
    apply(&s, &binding("no-secrets-binding", "no-secrets", &["Deny"], None));
    let st = refused(&s, "vap-msg", "creds", json!({"password": "x"})).assert_status(403, "Forbidden");
    assert_eq!(st["message"], "configmaps \"creds\" is forbidden: ValidatingAdmissionPolicy 'no-secrets' with binding 'no-secrets-binding' denied request: configmap creds must not hold a password");
    let dry = s.request(
        "POST",
        "/api/v1/namespaces/vap-msg/configmaps?dryRun=All",
        Some(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}, "data": {"password": "x"}})),
    );
    dry.assert_status(403, "Forbidden");

    // Warn: admitted, with upstream's Warning text.
    namespace(&s, "vap-warn");
    apply(
        &s,
        &configmap_policy(
            "warn-empty",
            "vap-warn",
            json!({
        "validations": [{"expression": "has(object.data)", "message": "a configmap should hold data"}]}),
        ),
    );
    apply(&s, &binding("warn-empty-binding", "warn-empty", &["Warn"], None));
    let warning = "Validation failed for ValidatingAdmissionPolicy 'warn-empty' with binding 'warn-empty-binding': a configmap should hold data";
    let mut n = 0;
    eventually("the Warn binding warns", || {
        n += 1;
        let name = format!("w{n}");
        let r = s.run(&["create", "configmap", "-n", "vap-warn", &name], None);
        assert_eq!(r.code, 0, "a Warn binding admits: {r:?}");
        r.stderr.contains(&format!("Warning: {warning}"))
    });

    // A binding's matchResources narrows the policy to the namespaces it
    // selects: one binding denies where bind=deny, another warns where
    // bind=warn, and elsewhere nothing judges; a namespace relabelled is
    // judged by its new labels.
    for (ns, label) in [("vap-bind-deny", Some("deny")), ("vap-bind-warn", Some("warn")), ("vap-bind-none", None)] {
        s.kubectl(&["create", "namespace", ns]);
        if let Some(l) = label {
            s.kubectl(&["label", "namespace", ns, &format!("bind={l}")]);
        }
    }
    let mut policy = configmap_policy(
        "bind-select",
        "",
        json!({"validations": [{"expression": "!has(object.data) || !('forbidden' in object.data)", "message": "no forbidden key"}]}),
    );
    policy["spec"]["matchConstraints"].as_object_mut().map(|m| m.remove("namespaceSelector"));
    apply(&s, &policy);
    for action in ["Deny", "Warn"] {
        let mut b = binding(&format!("bind-select-{}", action.to_lowercase()), "bind-select", &[action], None);
        b["spec"]["matchResources"] = json!({"namespaceSelector": {"matchLabels": {"bind": action.to_lowercase()}}});
        apply(&s, &b);
    }
    let forbidden = json!({"forbidden": "x"});
    refused(&s, "vap-bind-deny", "f", forbidden.clone()).assert_status(422, "Invalid");
    let warned = "Validation failed for ValidatingAdmissionPolicy 'bind-select' with binding 'bind-select-warn': no forbidden key";
    let mut n = 0;
    eventually("the Warn binding warns in its namespace", || {
        n += 1;
        let r = s
            .run(&["create", "configmap", "-n", "vap-bind-warn", &format!("f{n}"), "--from-literal=forbidden=x"], None);
        assert_eq!(r.code, 0, "a Warn binding admits: {r:?}");
        r.stderr.contains(&format!("Warning: {warned}"))
    });
    let r = s.run(&["create", "configmap", "-n", "vap-bind-none", "f", "--from-literal=forbidden=x"], None);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "no binding selects the namespace: {r:?}");
    s.kubectl(&["label", "namespace", "vap-bind-none", "bind=deny"]);
    refused(&s, "vap-bind-none", "g", forbidden).assert_status(422, "Invalid");

    // Audit: admitted; the failure and the policy's audit annotations are in the audit event.
    namespace(&s, "vap-audit");
    apply(
        &s,
        &configmap_policy(
            "audit-keys",
            "vap-audit",
            json!({
        "validations": [{"expression": "!has(object.data) || size(object.data) <= 1", "message": "too many keys"}],
        "auditAnnotations": [{"key": "keys", "valueExpression": "has(object.data) ? string(size(object.data)) + ' keys' : null"}]}),
        ),
    );
    apply(&s, &binding("audit-keys-binding", "audit-keys", &["Audit"], None));
    eventually("the Audit binding annotates the audit event", || {
        n += 1;
        let name = format!("a{n}");
        assert_eq!(post_configmap(&s, "vap-audit", &name, json!({"a": "1", "b": "2"})).status, 201, "Audit admits");
        std::thread::sleep(Duration::from_millis(200));
        let Some(a) = audit_annotations(&log, "vap-audit", &name) else { return false };
        let Some(failure) = a["validation.policy.admission.k8s.io/validation_failure"].as_str() else { return false };
        let failure: Value = serde_json::from_str(failure).expect("the annotation is JSON");
        assert_eq!(
            failure,
            json!([{"message": "too many keys", "policy": "audit-keys", "binding": "audit-keys-binding",
            "expressionIndex": 0, "validationActions": ["Audit"]}])
        );
        assert_eq!(a["audit-keys/keys"], "2 keys", "{a}");
        true
    });

    // Params from a ConfigMap; a missing one with parameterNotFoundAction Deny refuses.
    namespace(&s, "vap-params");
    s.kubectl(&["create", "namespace", "vap-config"]);
    apply(
        &s,
        &configmap_policy(
            "name-prefix",
            "vap-params",
            json!({
        "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
        "validations": [{"expression": "object.metadata.name.startsWith(params.data.prefix)",
            "messageExpression": "'name must start with ' + params.data.prefix"}]}),
        ),
    );
    apply(
        &s,
        &binding(
            "name-prefix-binding",
            "name-prefix",
            &["Deny"],
            Some(json!({"name": "prefix", "namespace": "vap-config", "parameterNotFoundAction": "Deny"})),
        ),
    );
    let st = refused(&s, "vap-params", "ok-1", json!({})).assert_status(422, "Invalid");
    assert_eq!(st["message"], "configmaps \"ok-1\" is forbidden: ValidatingAdmissionPolicy 'name-prefix' with binding 'name-prefix-binding' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction");
    s.kubectl(&["create", "configmap", "-n", "vap-config", "prefix", "--from-literal=prefix=ok-"]);
    assert_eq!(post_configmap(&s, "vap-params", "ok-1", json!({})).status, 201);
    let st = post_configmap(&s, "vap-params", "bad", json!({})).assert_status(422, "Invalid");
    assert!(st["message"].as_str().is_some_and(|m| m.ends_with("denied request: name must start with ok-")), "{st}");

    // Params from a custom resource, chosen by a selector; none found with Allow admits.
    s.apply_crd(&crd("limits", "Limit", LIMITS_PROPERTIES), "limits.vap.example.com");
    namespace(&s, "vap-crd");
    apply(
        &s,
        &configmap_policy(
            "key-limit",
            "vap-crd",
            json!({
        "paramKind": {"apiVersion": "vap.example.com/v1", "kind": "Limit"},
        "validations": [{"expression": "!has(object.data) || size(object.data) <= params.spec.maxKeys",
            "messageExpression": "'at most ' + string(params.spec.maxKeys) + ' keys'"}]}),
        ),
    );
    apply(
        &s,
        &binding(
            "key-limit-binding",
            "key-limit",
            &["Deny"],
            Some(json!({"selector": {"matchLabels": {"use": "yes"}}, "parameterNotFoundAction": "Allow"})),
        ),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(post_configmap(&s, "vap-crd", "before", json!({"a": "1", "b": "2"})).status, 201, "no params: Allow");
    s.apply("apiVersion: vap.example.com/v1\nkind: Limit\nmetadata: {name: one, namespace: vap-crd, labels: {use: \"yes\"}}\nspec: {maxKeys: 1}\n");
    let st = post_configmap(&s, "vap-crd", "after", json!({"a": "1", "b": "2"})).assert_status(422, "Invalid");
    assert!(
        st["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("with binding 'key-limit-binding' denied request: at most 1 keys")),
        "{st}"
    );
    assert_eq!(post_configmap(&s, "vap-crd", "fits", json!({"a": "1"})).status, 201);

    // Bad CEL is refused with 422 and the expression's field path.
    let bad = configmap_policy("bad-cel", "none", json!({"validations": [{"expression": "object.data.size() >"}]}));
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&bad.to_string()),
        &[
            "The ValidatingAdmissionPolicy \"bad-cel\" is invalid",
            "spec.validations[0].expression: Invalid value: \"object.data.size() >\": compilation failed",
        ],
    );

    // status.typeChecking: a field the matched kind lacks is reported.
    let type_warnings = |name: &str, rules: Value, expressions: &[&str]| {
        let validations: Vec<Value> = expressions.iter().map(|e| json!({"expression": e})).collect();
        apply(
            &s,
            &json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {"matchConstraints": {"resourceRules": rules}, "validations": validations}}),
        );
        let mut status = Value::Null;
        eventually("typeChecking is written", || {
            status = s.kubectl_json(&["get", "validatingadmissionpolicy", name])["status"].clone();
            status["observedGeneration"] == 1
        });
        status["typeChecking"]["expressionWarnings"].clone()
    };
    let deployments =
        json!([{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]}]);
    assert_eq!(
        type_warnings("typo", deployments, &["object.spec.replicas < 10", "object.spec.replicaz < 10"]),
        json!([{"fieldRef": "spec.validations[1].expression",
        "warning": "apps/v1, Kind=Deployment: compilation failed: ERROR: <input>:1:12: undefined field 'replicaz'\n | object.spec.replicaz < 10\n | ...........^\n"}]),
    );
    // Each served version is checked against its own schema: v1's field is
    // not in v2.
    let hpas = json!([{"apiGroups": ["autoscaling"], "apiVersions": ["v1", "v2"], "operations": ["CREATE"], "resources": ["horizontalpodautoscalers"]}]);
    assert_eq!(
        type_warnings("hpa-versions", hpas, &["object.spec.targetCPUUtilizationPercentage < 90"]),
        json!([{"fieldRef": "spec.validations[0].expression",
        "warning": "autoscaling/v2, Kind=HorizontalPodAutoscaler: compilation failed: ERROR: <input>:1:12: undefined field 'targetCPUUtilizationPercentage'\n | object.spec.targetCPUUtilizationPercentage < 90\n | ...........^\n"}]),
    );
    let fine = s.kubectl_json(&["get", "validatingadmissionpolicy", "size-limit"]);
    assert_eq!(fine["status"]["typeChecking"], json!({}), "{fine}");

    // A CRD rule whose string growth is over budget is refused at write.
    let costly = crd("costlies", "Costly", COSTLY_PROPERTIES);
    let err = s.kubectl_err(&["apply", "-f", "-"], Some(&costly), &[
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[s].x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor of",
        "(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)",
    ]);
    assert!(!err.contains("created"), "{err}");
    let bounded = costly.replace("type: string\n", "type: string\n                maxLength: 64\n");
    s.apply_crd(&bounded, "costlies.vap.example.com");
}

/// A namespaced CRD of group vap.example.com whose `spec` has these properties (YAML at 14 spaces).
fn crd(plural: &str, kind: &str, properties: &str) -> String {
    e2e::namespaced_crd(
        "vap.example.com",
        plural,
        kind,
        &format!("            type: object\n            properties:\n{properties}"),
    )
}

const LIMITS_PROPERTIES: &str = "              maxKeys: {type: integer}\n";

const COSTLY_PROPERTIES: &str = r#"              s:
                type: string
                x-kubernetes-validations:
                - rule: "self.replace('a', 'aaaaaaaaaa').replace('a', 'aaaaaaaaaa').replace('a', 'aaaaaaaaaa') != ''"
"#;

/// Waits until `kubectl args` fails with `needle` in its error output.
#[track_caller]
fn fails_with(s: &Server, args: &[&str], needle: &str) -> String {
    let start = Instant::now();
    loop {
        let out = s.run(args, None);
        if out.code != 0 && out.stderr.contains(needle) {
            return out.stderr;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "kubectl {args:?} never failed with {needle:?}: {out:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A policy matching CONNECT judges `kubectl exec` by its PodExecOptions;
/// the `authorizer` variable asks the server's RBAC for the requester; and
/// the Store's warnings (unknown fields) come before a policy's, on one path.
#[test]
fn policies_on_connect_with_the_authorizer_and_warnings() {
    let s = Server::start_with(&["--authorization-mode=Node,RBAC"]);

    // CONNECT: the options are the object.
    namespace(&s, "vap-connect");
    let exec_rule =
        json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CONNECT"], "resources": ["pods/exec"]});
    let mut policy = configmap_policy(
        "no-rm",
        "vap-connect",
        json!({"validations": [{"expression": "request.operation == 'CONNECT' && object.command.all(c, c != 'rm')",
            "message": "rm is not allowed here", "reason": "Forbidden"}]}),
    );
    policy["spec"]["matchConstraints"]["resourceRules"] = json!([exec_rule]);
    apply(&s, &policy);
    apply(&s, &binding("no-rm-binding", "no-rm", &["Deny"], None));
    s.kubectl(&["run", "web", "-n", "vap-connect", "--image=nginx"]);
    fails_with(
        &s,
        &["exec", "-n", "vap-connect", "web", "--", "rm", "-rf", "/tmp"],
        "ValidatingAdmissionPolicy 'no-rm' with binding 'no-rm-binding' denied request: rm is not allowed here",
    );
    s.kubectl_err(&["exec", "-n", "vap-connect", "web", "--", "ls"], None, &["pod web does not have a host assigned"]);

    // The authorizer: alice may create configmaps but not list secrets.
    namespace(&s, "vap-authz");
    for args in [
        &["create", "role", "cm-writer", "--verb=create", "--resource=configmaps", "-n", "vap-authz"][..],
        &["create", "rolebinding", "cm-writer", "--role=cm-writer", "--user=alice", "-n", "vap-authz"],
    ] {
        s.kubectl(args);
    }
    apply(
        &s,
        &configmap_policy(
            "secret-listers-only",
            "vap-authz",
            json!({"validations": [
                {"expression": "authorizer.path('/healthz').check('get').allowed()", "message": "no health"},
                {"expression": "authorizer.group('').resource('secrets').namespace(object.metadata.namespace).check('list').allowed()",
                 "messageExpression": "'may not list secrets; ' + authorizer.requestResource.check('create').reason()",
                 "reason": "Forbidden"}]}),
        ),
    );
    apply(&s, &binding("secret-listers-only-binding", "secret-listers-only", &["Deny"], None));
    let create = ["--as", "alice", "create", "configmap", "c1", "-n", "vap-authz"];
    fails_with(
        &s,
        &create,
        "denied request: may not list secrets; RBAC: allowed by RoleBinding \"cm-writer/vap-authz\" of Role \"cm-writer\" to User \"alice\"",
    );
    // The admin is in system:masters, which the authorizer allows anything.
    s.kubectl(&["create", "configmap", "c0", "-n", "vap-authz"]);
    s.kubectl(&["create", "role", "secret-lister", "--verb=list", "--resource=secrets", "-n", "vap-authz"]);
    s.kubectl(&["create", "rolebinding", "secret-lister", "--role=secret-lister", "--user=alice", "-n", "vap-authz"]);
    eventually("alice may list secrets, so the policy admits her", || s.run(&create, None).code == 0);

    // One path for warnings: the unknown field first, then the policy's.
    namespace(&s, "vap-warn");
    apply(
        &s,
        &configmap_policy(
            "warn-all",
            "vap-warn",
            json!({"validations": [{"expression": "false", "message": "warned by policy"}]}),
        ),
    );
    apply(&s, &binding("warn-all-binding", "warn-all", &["Warn"], None));
    let bogus = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: vap-warn}}\nbogus: 1\n")
    };
    let policy_warning = "Warning: Validation failed for ValidatingAdmissionPolicy 'warn-all' with binding 'warn-all-binding': warned by policy\n";
    let start = Instant::now();
    let out = loop {
        let name = format!("w{}", start.elapsed().as_millis());
        let out = s.run(&["create", "--validate=warn", "-f", "-"], Some(&bogus(&name)));
        assert_eq!(out.code, 0, "{out:?}");
        if out.stderr.contains("warned by policy") || start.elapsed() > Duration::from_secs(10) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(out.stderr, format!("Warning: unknown field \"bogus\"\n{policy_warning}"));
    // Warnings are answered with a refusal too, as upstream's recorder does.
    let out = s.run(&["create", "--validate=warn", "-f", "-"], Some(&bogus("Bad_Name")));
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.starts_with("Warning: unknown field \"bogus\"\n"), "{out:?}");
    assert!(out.stderr.contains("The ConfigMap \"Bad_Name\" is invalid"), "{out:?}");
}

/// A CRD served as v1 (stored) and v2 in group vap.example.com.
const TWO_VERSIONS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.vap.example.com}
spec:
  group: vap.example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, properties: {spec: {type: object, properties: {size: {type: integer}}}}}
  - name: v2
    served: true
    storage: false
    schema:
      openAPIV3Schema: {type: object, properties: {spec: {type: object, properties: {size: {type: integer}}}}}
"#;

/// matchPolicy Equivalent: a policy whose rules name v1 judges a request
/// made as v2, with the object converted to v1 and `request.kind` v1; an
/// Exact policy on v1 is not consulted for v2.
#[test]
fn an_equivalent_policy_judges_other_versions_in_its_own() {
    let s = Server::start();
    s.apply_crd(TWO_VERSIONS, "gadgets.vap.example.com");
    namespace(&s, "vap-equivalent");
    let policy = |name: &str, match_policy: &str, validation: Value| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {"matchConstraints": {"matchPolicy": match_policy,
                "resourceRules": [{"apiGroups": ["vap.example.com"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["gadgets"]}],
                "namespaceSelector": {"matchLabels": {"vap": "vap-equivalent"}}},
                "validations": [validation]}})
    };
    apply(
        &s,
        &policy(
            "small-gadgets",
            "Equivalent",
            json!({"expression": "object.spec.size < 10",
                "messageExpression": "'seen as ' + object.apiVersion + ', kind ' + request.kind.version + ' of ' + request.resource.resource + ', asked as ' + request.requestKind.version"}),
        ),
    );
    apply(&s, &binding("small-gadgets-binding", "small-gadgets", &["Deny"], None));
    apply(
        &s,
        &policy("v1-only-refused", "Exact", json!({"expression": "false", "message": "v1 requests are refused"})),
    );
    apply(&s, &binding("v1-only-refused-binding", "v1-only-refused", &["Deny"], None));
    let gadget = |version: &str, name: &str, size: u32| {
        json!({"apiVersion": format!("vap.example.com/{version}"), "kind": "Gadget",
            "metadata": {"name": name, "namespace": "vap-equivalent"}, "spec": {"size": size}})
    };
    let create = |version: &str, name: &str, size: u32| {
        let path = format!("/apis/vap.example.com/{version}/namespaces/vap-equivalent/gadgets");
        s.request("POST", &path, Some(&gadget(version, name, size)))
    };
    let mut probes = 0;
    eventually("the Exact policy refuses v1", || {
        probes += 1;
        create("v1", &format!("probe-{probes}"), 1).status == 422
    });

    let r = create("v2", "big", 20);
    let st = r.assert_status(422, "Invalid");
    assert_eq!(
        st["message"],
        "gadgets.vap.example.com \"big\" is forbidden: ValidatingAdmissionPolicy 'small-gadgets' with binding \
         'small-gadgets-binding' denied request: seen as vap.example.com/v1, kind v1 of gadgets, asked as v2",
    );
    let r = create("v2", "small", 5);
    assert_eq!(r.status, 201, "the Exact policy does not judge v2: {}", r.text());
    let r = create("v1", "small-v1", 5);
    assert!(
        r.text().contains(
            "'v1-only-refused' with binding 'v1-only-refused-binding' denied request: v1 requests are refused"
        ),
        "{}",
        r.text()
    );
}

/// A policy's evaluation is metered as upstream's: an expression that an
/// object makes too expensive stops at the per-call limit and is an error
/// under the failure policy, in upstream's words; a cheap object passes.
#[test]
fn policy_expressions_stop_at_the_cost_limit() {
    let s = Server::start();
    namespace(&s, "vap-cost");
    let distinct = "object.data.all(k, object.data.all(j, k == j || object.data[k] != '' || true))";
    apply(&s, &configmap_policy("pairwise", "vap-cost", json!({"validations": [{"expression": distinct}]})));
    apply(&s, &binding("pairwise", "pairwise", &["Deny"], None));
    let data = |n: usize| Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect());
    let r = refused(&s, "vap-cost", "large", data(1500));
    assert_eq!(r.status, 422, "{}", r.json());
    assert_eq!(
        r.json()["message"],
        format!(
            "configmaps \"large\" is forbidden: ValidatingAdmissionPolicy 'pairwise' with binding 'pairwise' denied request: expression '{distinct}' resulted in error: operation cancelled: actual cost limit exceeded"
        )
    );
    let small = post_configmap(&s, "vap-cost", "small", data(10));
    assert_eq!(small.status, 201, "{}", small.json());
}
