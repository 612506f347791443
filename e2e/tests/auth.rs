//! Authentication: x509 admin (every other test), no credentials (anonymous
//! by default, as upstream; 401 with --anonymous-auth=false), and bearer
//! tokens from --token-auth-file. What a user may then do is RBAC's (the
//! default mode), so each test binds roles.

use e2e::{Cred, Server};
use serde_json::json;

const UNAUTHORIZED: &str = e2e::KUBECTL_UNAUTHORIZED;

/// POSTs ConfigMap `anon` with no credentials.
fn create_configmap_without_credentials(s: &Server) -> e2e::HttpResponse {
    s.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Cred::None,
        &[("Content-Type", "application/json")],
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"anon"}}"#),
    )
}

#[test]
fn without_anonymous_auth_no_or_bad_credentials_get_401() {
    let mut s = Server::start_with(&["--anonymous-auth=false"]);
    for path in ["/api/v1/namespaces", "/api", "/apis/apps/v1/deployments", "/version", "/healthz", "/openapi/v2"] {
        let r = s.curl("GET", path, Cred::None, &[], None);
        r.assert_status(401, "Unauthorized");
        assert_eq!(
            r.json(),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
            "{path}"
        );
    }
    let r = create_configmap_without_credentials(&s);
    r.assert_status(401, "Unauthorized");
    s.curl("GET", "/api/v1/namespaces", Cred::Token("no-such-token".into()), &[], None)
        .assert_status(401, "Unauthorized");

    // (With no user at all kubectl would prompt for a username; a basic-auth user is
    // no credential the server accepts, so the request is unauthenticated.)
    let none = s.user_kubeconfig("none", "{username: nobody, password: nothing}");
    let out = s.run_env(&["get", "namespaces"], None, &[("KUBECONFIG", &none)]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains(UNAUTHORIZED), "{out:?}");
    let bad = s.user_kubeconfig("bad", "{token: wrong}");
    let out = s.run_env(&["get", "configmaps"], None, &[("KUBECONFIG", &bad)]);
    assert!(out.code == 1 && out.stderr.contains(UNAUTHORIZED), "{out:?}");
    // Nothing was created by the refused requests.
    s.kubectl_err(&["get", "configmaps", "anon"], None, &["NotFound"]);
    s.assert_healthy();
}

#[test]
fn bearer_tokens_from_token_auth_file() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "alice-token,alice,1001,\"devs,ops\"\nbob-token,bob,1002\n").unwrap();
    let mut s = Server::start_with(&["--token-auth-file", tokens.to_str().unwrap()]);
    // alice reads and writes through her group, bob as himself.
    s.kubectl(&["create", "clusterrolebinding", "viewers", "--clusterrole=view", "--group=devs", "--user=bob"]);
    s.kubectl(&["create", "rolebinding", "editors", "--clusterrole=edit", "--group=devs", "--user=bob"]);
    e2e::eventually("the bindings reach the authorizer", || {
        s.curl("GET", "/api/v1/namespaces", Cred::Token("bob-token".into()), &[], None).status == 200
    });
    for (tok, name) in [("alice-token", "alice"), ("bob-token", "bob")] {
        let r = s.curl("GET", "/api/v1/namespaces", Cred::Token(tok.into()), &[], None);
        assert_eq!(r.status, 200, "{tok}: {}", r.text());
        assert_eq!(r.json()["kind"], "NamespaceList");
        let kc = s.user_kubeconfig(name, &format!("{{token: {tok}}}"));
        let out = s.run_env(
            &["create", "configmap", &format!("{name}-cm"), "--from-literal=a=b"],
            None,
            &[("KUBECONFIG", &kc)],
        );
        assert_eq!((out.code, out.stdout.as_str()), (0, format!("configmap/{name}-cm created\n").as_str()), "{out:?}");
        let out = s.run_env(
            &["get", "configmaps", &format!("{name}-cm"), "-o", "jsonpath={.data.a}"],
            None,
            &[("KUBECONFIG", &kc)],
        );
        assert_eq!((out.code, out.stdout.as_str()), (0, "b"), "{out:?}");
    }
    let kc = s.user_kubeconfig("wrong", "{token: alice-token-x}");
    let out = s.run_env(&["get", "ns"], None, &[("KUBECONFIG", &kc)]);
    assert!(out.code == 1 && out.stderr.contains(UNAUTHORIZED), "{out:?}");
    // The scheme is case-insensitive, as upstream's.
    for scheme in ["bearer", "BEARER"] {
        let auth = format!("{scheme} alice-token");
        let r = s.curl("GET", "/api/v1/namespaces", Cred::None, &[("Authorization", &auth)], None);
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
    }
    // Authenticators form a union, the certificate first: a valid client
    // certificate with a bad token is the certificate's user.
    let r = s.curl("GET", "/api/v1/namespaces", Cred::Admin, &[("Authorization", "Bearer nope")], None);
    assert_eq!(r.status, 200, "{}", r.text());
    // The admin certificate keeps working beside the tokens (kube-root-ca.crt
    // is published in every namespace, as upstream).
    assert_eq!(
        s.kubectl(&["get", "configmaps", "-o", "name"]),
        "configmap/alice-cm\nconfigmap/bob-cm\nconfigmap/kube-root-ca.crt\n"
    );
    s.assert_healthy();
}

#[test]
fn requests_without_credentials_are_anonymous_by_default() {
    let mut s = Server::start();
    // system:public-info-viewer (bound to system:unauthenticated) lets anyone
    // read health and the version, as upstream.
    for path in ["/healthz", "/livez", "/readyz", "/version", "/version/"] {
        let r = s.curl("GET", path, Cred::None, &[], None);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let r = s.curl("GET", "/version", Cred::None, &[], None);
    assert_eq!(r.json()["minor"], "33");
    // Discovery (system:discovery), OpenAPI, metrics and the issuer's OIDC
    // documents (system:service-account-issuer-discovery, bound to
    // ServiceAccounts only) are for authenticated callers: 403, not 401.
    for path in [
        "/api",
        "/apis",
        "/apis/apps/v1",
        "/openapi/v2",
        "/metrics",
        "/.well-known/openid-configuration",
        "/openid/v1/jwks",
        "/healthz/ping",
    ] {
        let r = s.curl("GET", path, Cred::None, &[], None);
        r.assert_status(403, "Forbidden");
        assert_eq!(
            r.json(),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": format!("forbidden: User \"system:anonymous\" cannot get path \"{path}\""),
                   "reason": "Forbidden", "details": {}, "code": 403}),
            "{path}"
        );
    }
    let r = s.curl("GET", "/api/v1/namespaces", Cred::None, &[], None);
    r.assert_status(403, "Forbidden");
    assert_eq!(
        r.json()["message"],
        "namespaces is forbidden: User \"system:anonymous\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
    );
    let r = create_configmap_without_credentials(&s);
    r.assert_status(403, "Forbidden");
    assert_eq!(
        r.json()["message"],
        "configmaps is forbidden: User \"system:anonymous\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    // kubectl without a credential the server accepts is refused at
    // discovery, and words it as against upstream (client-go reads no
    // message from a discovery 403).
    let none = s.user_kubeconfig("none", "{username: nobody, password: nothing}");
    let out = s.run_env(&["get", "namespaces"], None, &[("KUBECONFIG", &none)]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("couldn't get current server API group list: unknown"), "{out:?}");
    assert!(out.stderr.ends_with("\nError from server (Forbidden): unknown\n"), "{out:?}");
    // A wrong token is still refused: anonymous is only for requests with no credentials.
    s.curl("GET", "/api", Cred::Token("nope".into()), &[], None).assert_status(401, "Unauthorized");
    // Bound like any user, anonymous may do more.
    s.kubectl(&["create", "clusterrolebinding", "anonymous-view", "--clusterrole=view", "--user=system:anonymous"]);
    e2e::eventually("the binding reaches the authorizer", || {
        s.curl("GET", "/api/v1/namespaces", Cred::None, &[], None).status == 200
    });
    let r = s.curl("GET", "/api/v1/namespaces", Cred::None, &[], None);
    assert_eq!(r.json()["kind"], "NamespaceList");
    // Nothing was created by the refused write.
    s.kubectl_err(&["get", "configmaps", "anon"], None, &["NotFound"]);
    s.assert_healthy();
}

e2e::on_etcd!(
    without_anonymous_auth_no_or_bad_credentials_get_401,
    bearer_tokens_from_token_auth_file,
    requests_without_credentials_are_anonymous_by_default
);
