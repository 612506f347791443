//! The sample aggregated API server (`sample-apiserver`) on its own: started
//! with a front-proxy CA made here, driven with curl as the aggregator's proxy
//! would (a client certificate from that CA plus X-Remote-* headers).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};

const GV: &str = "/apis/wardle.example.com/v1alpha1";

struct Pem {
    cert: String,
    key: String,
}

fn ca(cn: &str) -> Pem {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    p.distinguished_name = d;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    Pem { cert: p.self_signed(&key).unwrap().pem(), key: key.serialize_pem() }
}

fn client(ca: &Pem, cn: &str) -> Pem {
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, KeyPair::from_pem(&ca.key).unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    p.distinguished_name = d;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Pem { cert: p.signed_by(&key, &issuer).unwrap().pem(), key: key.serialize_pem() }
}

/// A client certificate written out for curl.
struct ClientFiles {
    cert: PathBuf,
    key: PathBuf,
}

fn write_client(dir: &Path, name: &str, pem: &Pem) -> ClientFiles {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &pem.cert).unwrap();
    std::fs::write(&key, &pem.key).unwrap();
    ClientFiles { cert, key }
}

struct Sample {
    child: Child,
    port: u16,
    ca: PathBuf,
    log: PathBuf,
}

impl Drop for Sample {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[String], log: &Path) -> Sample {
    let err = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sample-apiserver"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("starting sample-apiserver");
    // Owned by the guard from here on, so a failed start still ends the process.
    let mut sample = Sample { child, port: 0, ca: PathBuf::new(), log: log.to_path_buf() };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut text = String::new();
        std::fs::File::open(log).unwrap().read_to_string(&mut text).unwrap();
        let ready: Vec<&str> = text.lines().filter(|l| l.starts_with("sample-apiserver ready: ")).collect();
        if let Some(line) = ready.first() {
            assert_eq!(ready.len(), 1, "one ready line: {text}");
            let rest = line.trim_start_matches("sample-apiserver ready: ");
            let (port, ca) = rest.split_once(' ').expect("port and ca");
            sample.port = port.trim_start_matches("port=").parse().expect("a port number");
            sample.ca = PathBuf::from(ca.trim_start_matches("ca="));
            return sample;
        }
        if let Ok(Some(status)) = sample.child.try_wait() {
            panic!("sample-apiserver exited ({status}):\n{text}");
        }
        assert!(Instant::now() < deadline, "sample-apiserver did not become ready:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    #[track_caller]
    fn expect(&self, code: u16) -> Value {
        assert_eq!(self.status, code, "{}", String::from_utf8_lossy(&self.body));
        self.json()
    }

    #[track_caller]
    fn expect_status(&self, code: u16, reason: &str) -> Value {
        let v = self.expect(code);
        assert_eq!(
            (v["kind"].as_str(), v["reason"].as_str(), v["code"].as_u64()),
            (Some("Status"), Some(reason), Some(code as u64)),
            "{v}"
        );
        v
    }
}

impl Sample {
    /// A request with curl, verifying the server against its own CA.
    fn curl(
        &self,
        cert: Option<&ClientFiles>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Answer {
        let mut cmd = Command::new(e2e::require_tool("curl"));
        cmd.args(["-sS", "--max-time", "30", "-X", method, "-w", "\n%{http_code}", "--cacert"]).arg(&self.ca);
        if let Some(c) = cert {
            cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
        }
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if let Some(b) = body {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                cmd.args(["-H", "Content-Type: application/json"]);
            }
            cmd.arg("--data-binary").arg(b.to_string());
        }
        cmd.arg(format!("https://localhost:{}{path}", self.port));
        let out = cmd.output().expect("running curl");
        assert!(out.status.success(), "curl {method} {path}: {}", String::from_utf8_lossy(&out.stderr));
        let text = out.stdout;
        let split = text.iter().rposition(|b| *b == b'\n').expect("status line");
        let status = String::from_utf8_lossy(&text[split + 1..]).trim().parse().expect("status code");
        Answer { status, body: text[..split].to_vec() }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn flunder(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder", "metadata": {"name": name}, "spec": spec})
}

#[test]
fn serves_flunders_to_the_front_proxy_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let proxy_ca = ca("front-proxy-ca");
    std::fs::write(dir.join("proxy-ca.crt"), &proxy_ca.cert).unwrap();
    let proxy = write_client(dir, "proxy", &client(&proxy_ca, "front-proxy-client"));
    let not_allowed = write_client(dir, "other-cn", &client(&proxy_ca, "someone-else"));
    let stranger = write_client(dir, "stranger", &client(&ca("another-ca"), "front-proxy-client"));
    let cert_dir = dir.join("certs");
    let args = |port: u16| -> Vec<String> {
        vec![
            "--secure-port".into(),
            port.to_string(),
            "--cert-dir".into(),
            cert_dir.display().to_string(),
            "--requestheader-client-ca-file".into(),
            dir.join("proxy-ca.crt").display().to_string(),
            "--requestheader-allowed-names".into(),
            "front-proxy-client".into(),
            "--requestheader-username-headers".into(),
            "X-Remote-User".into(),
            "--requestheader-group-headers".into(),
            "X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix".into(),
            "X-Remote-Extra-".into(),
            "--tls-san".into(),
            "sample.example.test".into(),
        ]
    };
    let s = start(&args(0), &dir.join("sample.log"));
    assert_eq!(s.ca, cert_dir.join("ca.crt"));
    let alice: &[(&str, &str)] = &[("X-Remote-User", "alice"), ("X-Remote-Group", "dev"), ("X-Remote-Group", "ops")];
    let p = Some(&proxy);

    // Discovery, legacy and aggregated.
    let groups = s.curl(p, "GET", "/apis", alice, None).expect(200);
    assert_eq!(groups["kind"], "APIGroupList", "{groups}");
    assert_eq!(groups["groups"][0]["name"], "wardle.example.com", "{groups}");
    assert_eq!(groups["groups"][0]["preferredVersion"]["groupVersion"], "wardle.example.com/v1alpha1", "{groups}");
    for v in ["v2", "v2beta1"] {
        let accept = format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList");
        let agg = s.curl(p, "GET", "/apis", &[alice, &[("Accept", accept.as_str())]].concat(), None).expect(200);
        assert_eq!(agg["apiVersion"], format!("apidiscovery.k8s.io/{v}"), "{agg}");
        let r = &agg["items"][0]["versions"][0]["resources"][0];
        assert_eq!(agg["items"][0]["metadata"]["name"], "wardle.example.com", "{agg}");
        assert_eq!((r["resource"].as_str(), r["scope"].as_str()), (Some("flunders"), Some("Namespaced")), "{agg}");
        assert_eq!(r["shortNames"], json!(["fl"]), "{agg}");
    }
    let group = s.curl(p, "GET", "/apis/wardle.example.com", alice, None).expect(200);
    assert_eq!(group["kind"], "APIGroup", "{group}");
    let list = s.curl(p, "GET", GV, alice, None).expect(200);
    let r = &list["resources"][0];
    assert_eq!(list["groupVersion"], "wardle.example.com/v1alpha1", "{list}");
    assert_eq!(
        (r["name"].as_str(), r["kind"].as_str(), r["singularName"].as_str(), r["namespaced"].as_bool()),
        (Some("flunders"), Some("Flunder"), Some("flunder"), Some(true)),
        "{list}"
    );
    assert_eq!(r["shortNames"], json!(["fl"]), "{list}");
    for verb in ["create", "delete", "get", "list", "patch", "update", "watch"] {
        assert!(r["verbs"].as_array().unwrap().contains(&json!(verb)), "{verb}: {list}");
    }

    // OpenAPI, both versions, with the schema's enum.
    let v2 = s.curl(p, "GET", "/openapi/v2", alice, None).expect(200);
    let def = &v2["definitions"]["com.example.wardle.v1alpha1.Flunder"];
    assert_eq!(
        def["properties"]["spec"]["properties"]["referenceType"]["enum"],
        json!(["Flunder", "Fischer"]),
        "{def}"
    );
    assert_eq!(def["x-kubernetes-group-version-kind"][0]["kind"], "Flunder", "{def}");
    assert!(v2["paths"].get("/apis/wardle.example.com/v1alpha1/namespaces/{namespace}/flunders").is_some());
    let index = s.curl(p, "GET", "/openapi/v3", alice, None).expect(200);
    let url =
        index["paths"]["apis/wardle.example.com/v1alpha1"]["serverRelativeURL"].as_str().expect("v3 path").to_string();
    let v3 = s.curl(p, "GET", &url, alice, None).expect(200);
    assert!(v3["components"]["schemas"].get("com.example.wardle.v1alpha1.Flunder").is_some());

    // Health and version.
    for path in ["/healthz", "/livez", "/readyz"] {
        let a = s.curl(p, "GET", path, alice, None);
        assert_eq!((a.status, String::from_utf8_lossy(&a.body).to_string()), (200, "ok".to_string()), "{path}");
    }
    assert_eq!(s.curl(p, "GET", "/version", alice, None).expect(200)["major"], "1");

    // Create records the caller; get, list and watch work.
    let flunders = format!("{GV}/namespaces/default/flunders");
    let made = s.curl(p, "POST", &flunders, alice, Some(&flunder("one", json!({"reference": "two"})))).expect(201);
    let ann = &made["metadata"]["annotations"];
    assert_eq!(ann["wardle.example.com/user"], "alice", "{made}");
    assert_eq!(ann["wardle.example.com/groups"], "dev,ops,system:authenticated", "{made}");
    assert_eq!(ann["wardle.example.com/authorization"], "absent", "{made}");
    assert_eq!(made["spec"]["referenceType"], "Flunder", "defaulted: {made}");
    let bob = [("X-Remote-User", "bob"), ("Authorization", "Bearer not-for-the-backend")];
    let made = s.curl(p, "POST", &flunders, &bob, Some(&flunder("two", json!({})))).expect(201);
    let ann = &made["metadata"]["annotations"];
    assert_eq!(ann["wardle.example.com/user"], "bob", "{made}");
    assert_eq!(ann["wardle.example.com/groups"], "system:authenticated", "{made}");
    assert_eq!(ann["wardle.example.com/authorization"], "present", "{made}");

    let got = s.curl(p, "GET", &format!("{flunders}/one"), alice, None).expect(200);
    assert_eq!((got["kind"].as_str(), got["spec"]["reference"].as_str()), (Some("Flunder"), Some("two")), "{got}");
    let listed = s.curl(p, "GET", &flunders, alice, None).expect(200);
    assert_eq!(listed["kind"], "FlunderList", "{listed}");
    let names: Vec<&str> =
        listed["items"].as_array().unwrap().iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    let rv = listed["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    s.curl(p, "POST", &flunders, alice, Some(&flunder("three", json!({"reference": "f", "referenceType": "Fischer"}))))
        .expect(201);
    let watched =
        s.curl(p, "GET", &format!("{flunders}?watch=true&resourceVersion={rv}&timeoutSeconds=2"), alice, None);
    assert_eq!(watched.status, 200);
    let events: Vec<Value> =
        String::from_utf8_lossy(&watched.body).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0]["type"].as_str(), events[0]["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("three"))
    );

    // Patch and delete.
    let merge = [alice, &[("Content-Type", "application/merge-patch+json")]].concat();
    let patched = s.curl(p, "PATCH", &format!("{flunders}/two"), &merge, Some(&json!({"status": {"phase": "happy"}})));
    let patched = patched.expect(200);
    assert_eq!(patched["status"]["phase"], "happy", "{patched}");
    assert_eq!(
        patched["metadata"]["annotations"]["wardle.example.com/user"], "bob",
        "a patch keeps the record: {patched}"
    );
    s.curl(p, "DELETE", &format!("{flunders}/three"), alice, None).expect(200);
    s.curl(p, "GET", &format!("{flunders}/three"), alice, None).expect_status(404, "NotFound");

    // Upstream's validation of the reference.
    let bad = s
        .curl(p, "POST", &flunders, alice, Some(&flunder("bad", json!({"referenceType": "Fischer"}))))
        .expect_status(422, "Invalid");
    assert_eq!(bad["details"]["causes"][0]["field"], "spec.fischerReference", "{bad}");

    // Only the front proxy gets in.
    s.curl(None, "GET", &flunders, alice, None).expect_status(401, "Unauthorized");
    s.curl(Some(&stranger), "GET", &flunders, alice, None).expect_status(401, "Unauthorized");
    s.curl(Some(&not_allowed), "GET", &flunders, alice, None).expect_status(401, "Unauthorized");
    s.curl(p, "GET", &flunders, &[], None).expect_status(401, "Unauthorized");
    s.curl(None, "GET", "/apis", &[("X-Remote-User", "mallory")], None).expect_status(401, "Unauthorized");
    s.curl(Some(&stranger), "POST", &flunders, alice, Some(&flunder("sneaky", json!({}))))
        .expect_status(401, "Unauthorized");

    // A restart on the same port and cert dir keeps the CA and the objects.
    let port = s.port;
    let ca_before = std::fs::read(&s.ca).unwrap();
    assert!(!s.log_text().contains("panicked"), "{}", s.log_text());
    drop(s);
    let s = start(&args(port), &dir.join("sample2.log"));
    assert_eq!(s.port, port);
    assert_eq!(std::fs::read(&s.ca).unwrap(), ca_before, "the CA is reused");
    let listed = s.curl(p, "GET", &flunders, alice, None).expect(200);
    let names: Vec<&str> =
        listed["items"].as_array().unwrap().iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(listed["items"][0]["metadata"]["annotations"]["wardle.example.com/user"], "alice");
    assert!(!s.log_text().contains("panicked"), "{}", s.log_text());
}
