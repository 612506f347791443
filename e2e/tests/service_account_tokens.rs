//! ServiceAccount tokens end to end: `kubectl create token` (TokenRequest),
//! a pod-less client authenticating with the token (`kubectl auth whoami`),
//! bound tokens dying with their Pod or a recreated ServiceAccount, the 401s
//! for expired, wrong-audience, wrongly-signed and garbage tokens with
//! TokenReview's reasons, OIDC discovery checked by verifying a token against
//! the published key set here (not by asking the server), legacy token
//! Secrets filled by the tokens controller, and the ServiceAccount admission
//! plugin's token volume.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use e2e::{eventually, Cred, Server, KUBECTL_UNAUTHORIZED};
use serde_json::{json, Value};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Waits until a TokenReview refuses `token`: validation reads the watch
/// cache first, as upstream's does its informers, so a deletion counts once
/// the cache has seen it.
fn no_longer_valid(s: &Server, token: &str) {
    eventually("the token refused", || review(s, token, &[])["error"].is_string());
}
fn b64url(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWT's header and payload, decoded without verification.
fn decode(token: &str) -> (Value, Value) {
    let part = |i: usize| -> Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD.decode(token.split('.').nth(i).expect("a JWT part")).expect("base64url"),
        )
        .expect("JSON")
    };
    (part(0), part(1))
}

/// Signs `payload` ES256 with the server's generated DATA_DIR/pki/sa.key (a
/// PKCS#8 P-256 key), as a forger holding the key (or the server itself) would.
fn sign_with_server_key(s: &Server, kid: &str, payload: &Value) -> String {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let pem = std::fs::read_to_string(s.data_dir.join("pki/sa.key")).expect("reading sa.key");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).expect("PEM body");
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng).expect("a PKCS#8 P-256 key");
    let input = format!("{}.{}", b64url(&json!({"alg": "ES256", "kid": kid})), b64url(payload));
    let sig = key.sign(&rng, input.as_bytes()).expect("signing");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// `kubectl auth whoami -o json` as the holder of `token` alone.
fn whoami(s: &Server, token: &str) -> Result<Value, String> {
    let kc = s.user_kubeconfig("token.kubeconfig", &format!("{{token: {}}}", json!(token)));
    let r = s.run_env(&["auth", "whoami", "-o", "json"], None, &[("KUBECONFIG", &kc)]);
    if r.code != 0 {
        return Err(r.stderr);
    }
    let review: Value = serde_json::from_str(&r.stdout).expect("whoami prints JSON");
    Ok(review["status"]["userInfo"].clone())
}

#[track_caller]
fn assert_refused(s: &Server, token: &str) {
    let err = whoami(s, token).expect_err("the token must be refused");
    assert!(err.contains(KUBECTL_UNAUTHORIZED), "{err}");
    s.curl("GET", "/api", Cred::Token(token.into()), &[], None).assert_status(401, "Unauthorized");
}

/// A TokenReview's status for `token` (and `audiences`, if any).
fn review(s: &Server, token: &str, audiences: &[&str]) -> Value {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token, "audiences": audiences}});
    let out = s.kubectl_stdin(&["create", "-o", "json", "-f", "-"], Some(&body.to_string()));
    serde_json::from_str::<Value>(&out).expect("JSON")["status"].clone()
}

fn create_token(s: &Server, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    s.kubectl(&all).trim().to_string()
}

fn uid(s: &Server, args: &[&str]) -> String {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "jsonpath={.metadata.uid}"]);
    s.kubectl(&all)
}

#[test]
fn service_account_tokens() {
    let mut s = Server::start();
    s.kubectl(&["create", "namespace", "team"]);
    s.kubectl(&["create", "serviceaccount", "robot", "-n", "team"]);
    let sa_uid = uid(&s, &["serviceaccount", "robot", "-n", "team"]);

    // A token from `kubectl create token` authenticates a client with no
    // other credential as the ServiceAccount, with upstream's user info.
    let token = create_token(&s, &["robot", "-n", "team", "--duration", "2h"]);
    let (header, claims) = decode(&token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], json!([ISSUER]));
    assert_eq!(claims["sub"], "system:serviceaccount:team:robot");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 7200);
    assert_eq!(claims["nbf"], claims["iat"]);
    assert_eq!(
        claims["kubernetes.io"],
        json!({"namespace": "team", "serviceaccount": {"name": "robot", "uid": sa_uid}})
    );
    let jti = claims["jti"].as_str().expect("a jti").to_string();
    let user = whoami(&s, &token).expect("the token authenticates");
    assert_eq!(
        user,
        json!({"username": "system:serviceaccount:team:robot", "uid": sa_uid,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/credential-id": [format!("JTI={jti}")]}})
    );
    let ok = review(&s, &token, &[]);
    assert_eq!((ok["authenticated"].clone(), ok["audiences"].clone()), (json!(true), json!([ISSUER])), "{ok}");
    assert_eq!(ok["user"]["username"], "system:serviceaccount:team:robot");

    // The scheme is case-insensitive.
    let r = s.curl("GET", "/api", Cred::None, &[("Authorization", &format!("bearer {token}"))], None);
    assert_eq!(r.status, 200, "{}", r.text());

    // TokenRequest's own rules.
    s.kubectl_err(
        &["create", "token", "robot", "-n", "team", "--duration", "5m"],
        None,
        &[r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"#],
    );
    s.kubectl_err(&["create", "token", "nobody", "-n", "team"], None, &[r#"serviceaccounts "nobody" not found"#]);
    s.kubectl_err(
        &["create", "token", "robot", "-n", "team", "--bound-object-kind", "Pod", "--bound-object-name", "nope"],
        None,
        &[r#"pods "nope" not found"#],
    );

    // A pod gets the projected token volume in every container.
    s.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: worker, namespace: team}\nspec:\n  serviceAccountName: robot\n  initContainers: [{name: init, image: busybox}]\n  containers: [{name: app, image: nginx}]\n",
    );
    let pod = s.kubectl_json(&["get", "pod", "worker", "-n", "team", "-o", "json"]);
    let volume = pod["spec"]["volumes"][0].clone();
    let name = volume["name"].as_str().expect("a volume name").to_string();
    assert!(name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5, "{name}");
    assert_eq!(
        volume["projected"],
        json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]})
    );
    let mount = json!([{"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
    assert_eq!(pod["spec"]["containers"][0]["volumeMounts"], mount);
    assert_eq!(pod["spec"]["initContainers"][0]["volumeMounts"], mount);
    // Unless the pod says not to; and it runs as `default` when it names no account.
    s.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: quiet, namespace: team}\nspec:\n  automountServiceAccountToken: false\n  containers: [{name: app, image: nginx}]\n",
    );
    let quiet = s.kubectl_json(&["get", "pod", "quiet", "-n", "team", "-o", "json"]);
    assert_eq!((quiet["spec"]["serviceAccountName"].clone(), quiet["spec"].get("volumes")), (json!("default"), None));
    s.kubectl_err(
        &["run", "lost", "-n", "team", "--image=nginx", "--overrides", r#"{"spec":{"serviceAccountName":"ghost"}}"#],
        None,
        &[r#"pods "lost" is forbidden: error looking up service account team/ghost: serviceaccount "ghost" not found"#],
    );

    // A token bound to the pod names it, and dies with it.
    let bound =
        create_token(&s, &["robot", "-n", "team", "--bound-object-kind", "Pod", "--bound-object-name", "worker"]);
    let pod_uid = uid(&s, &["pod", "worker", "-n", "team"]);
    assert_eq!(decode(&bound).1["kubernetes.io"]["pod"], json!({"name": "worker", "uid": pod_uid}));
    let user = whoami(&s, &bound).expect("the bound token authenticates");
    assert_eq!(user["extra"]["authentication.kubernetes.io/pod-name"], json!(["worker"]));
    assert_eq!(user["extra"]["authentication.kubernetes.io/pod-uid"], json!([pod_uid]));
    s.kubectl_err(
        &["create", "token", "default", "-n", "team", "--bound-object-kind", "Pod", "--bound-object-name", "worker"],
        None,
        &[r#"cannot bind token for serviceaccount "default" to pod running with different serviceaccount name."#],
    );
    s.kubectl(&["delete", "pod", "worker", "-n", "team", "--grace-period=0", "--force"]);
    no_longer_valid(&s, &bound);
    assert_refused(&s, &bound);
    assert_eq!(review(&s, &bound, &[]), json!({"user": {}, "error": "service account token has been invalidated"}));

    // So does one bound to a Secret.
    s.kubectl(&["create", "secret", "generic", "holder", "-n", "team", "--from-literal=a=b"]);
    let held =
        create_token(&s, &["robot", "-n", "team", "--bound-object-kind", "Secret", "--bound-object-name", "holder"]);
    let secret_uid = uid(&s, &["secret", "holder", "-n", "team"]);
    assert_eq!(decode(&held).1["kubernetes.io"]["secret"], json!({"name": "holder", "uid": secret_uid}));
    assert_eq!(
        whoami(&s, &held)
            .expect("the secret-bound token authenticates")
            .get("extra")
            .map(|e| e.get("authentication.kubernetes.io/pod-name")),
        Some(None)
    );
    s.kubectl(&["delete", "secret", "holder", "-n", "team"]);
    no_longer_valid(&s, &held);
    assert_refused(&s, &held);

    // Recreating the ServiceAccount invalidates its tokens (uid checked).
    s.kubectl(&["delete", "serviceaccount", "robot", "-n", "team"]);
    s.kubectl(&["create", "serviceaccount", "robot", "-n", "team"]);
    let new_uid = uid(&s, &["serviceaccount", "robot", "-n", "team"]);
    no_longer_valid(&s, &token);
    assert_refused(&s, &token);
    assert_eq!(
        review(&s, &token, &[])["error"],
        format!("service account UID ({new_uid}) does not match claim ({sa_uid})")
    );

    // Expired (signed with the server's own key), wrong audience, bad
    // signature, garbage: 401, and TokenReview says why.
    let now = chrono::Utc::now().timestamp();
    let mut stale = decode(&create_token(&s, &["robot", "-n", "team"])).1;
    stale["exp"] = json!(now - 3600);
    stale["iat"] = json!(now - 7200);
    stale["nbf"] = json!(now - 7200);
    let kid = header["kid"].as_str().expect("a kid");
    let expired = sign_with_server_key(&s, kid, &stale);
    assert_refused(&s, &expired);
    assert_eq!(review(&s, &expired, &[])["error"], "service account token has expired");
    stale["exp"] = json!(now + 3600);
    assert_eq!(review(&s, &sign_with_server_key(&s, kid, &stale), &[])["authenticated"], true, "the forger's control");

    let other = create_token(&s, &["robot", "-n", "team", "--audience", "vault"]);
    assert_refused(&s, &other);
    assert_eq!(
        review(&s, &other, &[])["error"],
        format!(r#"token audiences ["vault"] is invalid for the target audiences ["{ISSUER}"]"#)
    );
    let for_vault = review(&s, &other, &["vault", "x"]);
    assert_eq!((for_vault["authenticated"].clone(), for_vault["audiences"].clone()), (json!(true), json!(["vault"])));

    let fresh = create_token(&s, &["robot", "-n", "team"]);
    let (head, body, _) = {
        let p: Vec<&str> = fresh.split('.').collect();
        (p[0].to_string(), p[1].to_string(), p[2].to_string())
    };
    let forged = format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]));
    assert_refused(&s, &forged);
    assert_eq!(review(&s, &forged, &[])["error"], "go-jose/go-jose: error in cryptographic primitive");
    let unknown_kid =
        format!("{}.{body}.{}", b64url(&json!({"alg": "ES256", "kid": "nope"})), forged.rsplit('.').next().unwrap());
    assert_eq!(review(&s, &unknown_kid, &[])["error"], "invalid signature, no keys found");
    for garbage in ["garbage", "a.b.c", "{}"] {
        assert_refused(&s, garbage);
        assert_eq!(review(&s, garbage, &[]), json!({"user": {}, "error": "invalid bearer token"}));
    }
    // A valid client certificate with a bad token is the certificate's user.
    let r = s.curl("GET", "/api", Cred::Admin, &[("Authorization", "Bearer garbage")], None);
    assert_eq!(r.status, 200, "{}", r.text());

    // OIDC discovery: the documents upstream serves, and a key set that
    // verifies the server's tokens by itself.
    let config = s.curl("GET", "/.well-known/openid-configuration", Cred::Admin, &[], None);
    assert_eq!(config.status, 200, "{}", config.text());
    assert_eq!(config.header("content-type"), ["application/json"]);
    assert_eq!(config.header("cache-control"), ["public, max-age=3600"]);
    assert_eq!(
        config.json(),
        json!({"issuer": ISSUER, "jwks_uri": format!("{}/openid/v1/jwks", s.url),
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"]})
    );
    let jwks = s.curl("GET", "/openid/v1/jwks", Cred::Admin, &[], None);
    assert_eq!(jwks.header("content-type"), ["application/jwk-set+json"]);
    assert_eq!(jwks.header("cache-control"), ["public, max-age=3600"]);
    let keys = jwks.json()["keys"].as_array().expect("keys").clone();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()),
        (Some("EC"), Some("ES256"), Some("sig"))
    );
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["kid"], decode(&fresh).0["kid"]);
    let component = |k: &str| URL_SAFE_NO_PAD.decode(key[k].as_str().expect("a JWK field")).expect("base64url");
    // The uncompressed point: 0x04, then x and y.
    let point = [&[4u8][..], &component("x"), &component("y")].concat();
    let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
    let verify = |token: &str| {
        let (input, sig) = token.rsplit_once('.').expect("a JWS");
        let sig = URL_SAFE_NO_PAD.decode(sig).expect("base64url");
        public.verify(input.as_bytes(), &sig).is_ok()
    };
    assert!(verify(&fresh), "the published key verifies a token");
    assert!(!verify(&forged), "and not a forged one");

    // A legacy token Secret is filled in by the tokens controller; its token
    // works while the Secret exists.
    s.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: robot-token\n  namespace: team\n  annotations: {kubernetes.io/service-account.name: robot}\ntype: kubernetes.io/service-account-token\n",
    );
    let mut secret = Value::Null;
    eventually("the token Secret filled in", || {
        secret = s.kubectl_json(&["get", "secret", "robot-token", "-n", "team", "-o", "json"]);
        secret["data"]["token"].is_string()
    });
    let data = |k: &str| String::from_utf8(STANDARD.decode(secret["data"][k].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(data("namespace"), "team");
    assert_eq!(data("ca.crt"), std::fs::read_to_string(s.data_dir.join("pki/ca.crt")).unwrap());
    assert_eq!(secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"], json!(new_uid));
    let legacy = data("token");
    assert_eq!(
        decode(&legacy).1,
        json!({"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": "team",
            "kubernetes.io/serviceaccount/secret.name": "robot-token",
            "kubernetes.io/serviceaccount/service-account.name": "robot",
            "kubernetes.io/serviceaccount/service-account.uid": new_uid,
            "sub": "system:serviceaccount:team:robot"})
    );
    let user = whoami(&s, &legacy).expect("the legacy token authenticates");
    assert_eq!(
        (user["username"].as_str(), user["uid"].as_str()),
        (Some("system:serviceaccount:team:robot"), Some(new_uid.as_str()))
    );
    assert_eq!(user.get("extra"), None);
    s.kubectl(&["delete", "secret", "robot-token", "-n", "team"]);
    no_longer_valid(&s, &legacy);
    assert_refused(&s, &legacy);
    assert_eq!(review(&s, &legacy, &[])["error"], "token has been invalidated");
    // One naming no ServiceAccount is deleted, as upstream's controller does.
    s.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: orphan\n  namespace: team\n  annotations: {kubernetes.io/service-account.name: ghost}\ntype: kubernetes.io/service-account-token\n",
    );
    eventually("the orphaned token Secret deleted", || {
        s.run(&["get", "secret", "orphan", "-n", "team"], None).code != 0
    });
    s.assert_healthy();
}

/// The flags: several issuers (the first signs), --api-audiences, a maximum
/// expiration, --service-account-jwks-uri, and the admission plugin off.
#[test]
fn service_account_flags() {
    let mut s = Server::start_with(&[
        "--service-account-issuer=https://one.example",
        "--service-account-issuer=https://two.example",
        "--api-audiences=https://api.example,extra",
        "--service-account-max-token-expiration=2h",
        "--service-account-jwks-uri=https://keys.example/jwks",
        "--disable-admission-plugins=ServiceAccount",
    ]);
    s.kubectl(&["create", "serviceaccount", "robot"]);
    let r = s.run(&["create", "token", "robot", "--duration", "5h"], None);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("Warning: requested expiration of 18000 seconds shortened to 7200 seconds"), "{r:?}");
    let token = r.stdout.trim().to_string();
    let (header, claims) = decode(&token);
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].clone()),
        (Some("https://one.example"), json!(["https://api.example", "extra"]))
    );
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 7200);
    assert_eq!(whoami(&s, &token).expect("authenticates")["username"], "system:serviceaccount:default:robot");
    assert_eq!(review(&s, &token, &[])["audiences"], json!(["https://api.example", "extra"]));

    // Tokens of the second issuer are accepted; of any other, not.
    let mut claims = claims;
    claims["iss"] = json!("https://two.example");
    let second = sign_with_server_key(&s, header["kid"].as_str().unwrap(), &claims);
    assert_eq!(
        whoami(&s, &second).expect("the second issuer is accepted")["username"],
        "system:serviceaccount:default:robot"
    );
    claims["iss"] = json!("https://three.example");
    assert_refused(&s, &sign_with_server_key(&s, header["kid"].as_str().unwrap(), &claims));

    let config = s.curl("GET", "/.well-known/openid-configuration", Cred::Admin, &[], None).json();
    assert_eq!(
        (config["issuer"].as_str(), config["jwks_uri"].as_str()),
        (Some("https://one.example"), Some("https://keys.example/jwks"))
    );

    // Without the plugin a pod is left as written.
    s.kubectl(&["run", "bare", "--image=nginx"]);
    let pod = s.kubectl_json(&["get", "pod", "bare", "-o", "json"]);
    assert_eq!((pod["spec"].get("serviceAccountName"), pod["spec"].get("volumes")), (None, None), "{pod}");
    s.assert_healthy();
}
