//! The create-only review kinds of authentication.k8s.io and
//! authorization.k8s.io: `kubectl auth whoami` (SelfSubjectReview),
//! `kubectl auth can-i` (SelfSubjectAccessReview), TokenReview against the
//! server's token file, and the access reviews' validation, on one server.
//! Nothing is stored: only `create` is served.

use std::sync::OnceLock;

use e2e::{table, Cred, HttpResponse, Server};
use serde_json::{json, Value};

const TOKENS: &str = "alice-token,alice,1001,\"devs,ops\"\n";

/// One server with a token file; no test changes anything another reads.
fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = e2e::scratch_root().join("reviews-tokens");
        std::fs::create_dir_all(&dir).expect("token dir");
        let tokens = dir.join("tokens.csv");
        std::fs::write(&tokens, TOKENS).expect("token file");
        // The reviews as the AlwaysAllow mode answers them; what RBAC answers
        // is tests/rbac.rs's.
        Server::start_with(&[
            "--token-auth-file",
            tokens.to_str().expect("utf-8 path"),
            "--authorization-mode=AlwaysAllow",
        ])
    })
}

/// A review's answer: 201 and the review with its status.
#[track_caller]
fn created(r: HttpResponse) -> Value {
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

#[test]
fn kubectl_auth_whoami_and_can_i() {
    let s = shared();
    let who = table(&s.kubectl(&["auth", "whoami"]));
    let value = |attr: &str| who.iter().find(|r| r["ATTRIBUTE"] == attr).map(|r| r["VALUE"].clone());
    assert_eq!(value("Username").as_deref(), Some("admin"));
    assert_eq!(value("Groups").as_deref(), Some("[system:masters system:authenticated]"));
    // The same through a token: the token file's user, uid and groups.
    let r = s.curl(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Cred::Token("alice-token".into()),
        &[("Content-Type", "application/json")],
        Some(br#"{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}"#),
    );
    let body = created(r);
    assert_eq!(
        body["status"]["userInfo"],
        json!({"username": "alice", "uid": "1001", "groups": ["devs", "ops", "system:authenticated"]})
    );
    assert!(body["metadata"]["creationTimestamp"].is_string(), "{body}");

    assert_eq!(s.kubectl(&["auth", "can-i", "list", "pods"]).trim(), "yes");
    assert_eq!(s.kubectl(&["auth", "can-i", "create", "deployments.apps", "-n", "kube-system"]).trim(), "yes");
    let rules = s.kubectl(&["auth", "can-i", "--list", "-n", "default"]);
    assert!(rules.lines().any(|l| l.split_whitespace().next() == Some("*.*")), "{rules}");
}

#[test]
fn token_review_uses_the_token_file() {
    let s = shared();
    let review = |token: &str| {
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
        s.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Some(&body))
    };
    let known = created(review("alice-token"));
    assert_eq!(known["kind"], "TokenReview");
    assert_eq!(known["status"]["authenticated"], true);
    assert_eq!(known["status"]["user"]["username"], "alice");
    assert_eq!(known["status"]["user"]["groups"], json!(["devs", "ops", "system:authenticated"]));
    let unknown = created(review("nobody"));
    // Upstream's bearer-token authenticator names the failure.
    assert_eq!(unknown["status"], json!({"user": {}, "error": "invalid bearer token"}));
    // A token-file token is good for the API audiences only.
    assert_eq!(known["status"]["audiences"], json!(["https://kubernetes.default.svc.cluster.local"]));
    let empty = review("").assert_status(400, "BadRequest");
    assert_eq!(empty["message"], "token is required for TokenReview in authentication");
    // Through kubectl as well (create -f of a review prints its name-less kind).
    let out = s.kubectl_json(&[
        "create",
        "-f",
        s.write_file(
            "tr.yaml",
            "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec: {token: alice-token}\n",
        )
        .to_str()
        .expect("utf-8 path"),
    ]);
    assert_eq!(out["status"]["user"]["uid"], "1001");
}

#[test]
fn access_reviews() {
    let s = shared();
    let post = |path: &str, body: Value| s.request("POST", path, Some(&body));
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "bob", "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "secrets"}}});
    let ok = created(post("/apis/authorization.k8s.io/v1/subjectaccessreviews", sar));
    assert_eq!(ok["status"], json!({"allowed": true}));
    assert_eq!(ok["spec"]["user"], "bob");

    let bad = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {}});
    let refused = post("/apis/authorization.k8s.io/v1/subjectaccessreviews", bad).assert_status(422, "Invalid");
    let causes: Vec<&str> =
        refused["details"]["causes"].as_array().unwrap().iter().filter_map(|c| c["field"].as_str()).collect();
    assert_eq!(causes, ["spec.resourceAttributes", "spec.user"]);

    let local = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
        "spec": {"groups": ["devs"], "resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}}});
    let ok = created(post("/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews", local.clone()));
    assert_eq!(
        (ok["metadata"]["namespace"].as_str(), ok["status"]["allowed"].as_bool()),
        (Some("default"), Some(true))
    );
    let elsewhere = post("/apis/authorization.k8s.io/v1/namespaces/kube-system/localsubjectaccessreviews", local)
        .assert_status(422, "Invalid");
    assert!(elsewhere["message"].as_str().unwrap_or_default().contains("must match metadata.namespace"), "{elsewhere}");

    let rules = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "default"}});
    let got = created(post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", rules));
    assert_eq!(got["status"]["resourceRules"], json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]));
    assert_eq!(got["status"]["incomplete"], false);
}

#[test]
fn only_create_is_served() {
    let s = shared();
    for gv in ["/apis/authentication.k8s.io/v1", "/apis/authorization.k8s.io/v1"] {
        let list = s.raw(gv);
        for r in list["resources"].as_array().expect("resources") {
            assert_eq!(r["verbs"], json!(["create"]), "{r}");
        }
    }
    let names: Vec<String> = s.raw("/apis/authorization.k8s.io/v1")["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        names,
        ["localsubjectaccessreviews", "selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews"]
    );
    let get = s.request("GET", "/apis/authentication.k8s.io/v1/tokenreviews", None);
    get.assert_status(405, "MethodNotAllowed");
    let named = s.request("GET", "/apis/authorization.k8s.io/v1/subjectaccessreviews/x", None);
    named.assert_status(405, "MethodNotAllowed");
    let explain = s.kubectl(&["explain", "tokenreviews"]);
    assert!(explain.contains("KIND:       TokenReview"), "{explain}");
}
