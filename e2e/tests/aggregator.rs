//! The aggregator with a real extension API server behind it: the workspace's
//! `sample-apiserver` (wardle.example.com/v1alpha1 flunders, TLS, trusting only
//! the front-proxy client certificate) registered with an APIService and an
//! ExternalName Service pointing at localhost, then driven with kubectl
//! through kube-apiserver: availability, discovery, create/get/watch through
//! the proxy, the caller's identity forwarded and its token stripped, the
//! backend going away and coming back. The backend delegates bearer tokens
//! and authorization to kube-apiserver (TokenReview, SubjectAccessReview),
//! as upstream's sample-apiserver does.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use e2e::{Cred, Server};
use serde_json::Value;

const APISERVICE: &str = "v1alpha1.wardle.example.com";
const TOKEN: &str = "wardle-token-4f1d";
/// A user with no role at all.
const BOB_TOKEN: &str = "bob-token-77aa";

/// Builds the sample server once per test process (`E2E_SAMPLE_BIN` names a
/// prebuilt one instead).
/// The label autoregistration marks its APIServices with.
const MANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";

fn sample_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("E2E_SAMPLE_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "e2e", "--bin", "sample-apiserver"])
            .current_dir(e2e::workspace_root())
            .status()
            .expect("running cargo build for sample-apiserver");
        assert!(status.success(), "building sample-apiserver failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| e2e::workspace_root().join("target"));
        let bin = target.join("debug").join("sample-apiserver");
        assert!(bin.exists(), "no sample-apiserver at {}", bin.display());
        bin
    })
}

/// A running sample-apiserver on a fixed port, trusting kube-apiserver's
/// front-proxy CA; it keeps its certificates and objects across restarts.
struct Sample {
    child: Option<Child>,
    port: u16,
    cert_dir: PathBuf,
    proxy_ca: PathBuf,
    log: PathBuf,
    /// Where it finds kube-apiserver for its reviews.
    kubeconfig: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local address").port()
}

impl Sample {
    fn start(server: &Server) -> Sample {
        let dir = server.scratch().join("sample");
        let mut s = Sample {
            child: None,
            port: free_port(),
            cert_dir: dir.clone(),
            proxy_ca: server.data_dir.join("pki").join("front-proxy-ca.crt"),
            log: server.scratch().join("sample.log"),
            kubeconfig: server.kubeconfig.clone(),
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let mut child = Command::new(sample_binary())
            .args(["--secure-port", &self.port.to_string(), "--bind-address", "127.0.0.1"])
            .arg("--cert-dir")
            .arg(&self.cert_dir)
            .arg("--requestheader-client-ca-file")
            .arg(&self.proxy_ca)
            .args(["--requestheader-allowed-names", "front-proxy-client", "--tls-san", "api.wardle.svc"])
            .arg("--authentication-kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--authorization-kubeconfig")
            .arg(&self.kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("starting sample-apiserver");
        let stderr = child.stderr.take().expect("stderr was piped");
        let (tx, rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = f.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if line.contains("sample-apiserver ready:") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("sample-apiserver did not start: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
        self.child = Some(child);
    }

    fn ca_bundle(&self) -> String {
        let pem = std::fs::read(self.cert_dir.join("ca.crt")).expect("reading the sample's CA");
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    /// A request straight to the backend, bypassing the aggregator, with a
    /// bearer token: (status code, body).
    fn call(&self, method: &str, path: &str, token: &str, body: Option<&str>) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-X", method, "-w", "\n%{http_code}", "--cacert"])
            .arg(self.cert_dir.join("ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {token}"), "-H", "Content-Type: application/json"])
            .arg(format!("https://localhost:{}{path}", self.port));
        if let Some(b) = body {
            cmd.args(["--data-binary", b]);
        }
        let out = cmd.output().expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sample {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The server, with a token user whose Authorization header the proxy must strip.
fn start_server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, format!("{TOKEN},alice,1001,\"wardle-devs,qa\"\n{BOB_TOKEN},bob,1002\n"))
        .expect("writing the token file");
    let server = Server::start_with(&["--token-auth-file", tokens.to_str().expect("utf-8 path")]);
    (server, dir)
}

fn apiservice_yaml(service: &str, port: u16, ca_bundle: &str) -> String {
    format!(
        "apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: {APISERVICE}
spec:
  group: wardle.example.com
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  service:
    namespace: wardle
    name: {service}
    port: {port}
  caBundle: {ca_bundle}
"
    )
}

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: wardle
spec:
  type: ExternalName
  externalName: localhost
";

fn flunder(name: &str) -> String {
    format!("apiVersion: wardle.example.com/v1alpha1\nkind: Flunder\nmetadata:\n  name: {name}\n  namespace: wardle\n")
}

/// The Available condition of the sample's APIService: (status, reason, message).
fn available(server: &Server) -> (String, String, String) {
    let obj = server.kubectl_json(&["get", "apiservice", APISERVICE]);
    let conds = obj.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let c = conds.iter().find(|c| c["type"] == "Available").cloned().unwrap_or_default();
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

#[track_caller]
fn wait_available(server: &Server, status: &str, reason: &str) -> (String, String, String) {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let got = available(server);
        if got.0 == status && got.1 == reason {
            return got;
        }
        assert!(Instant::now() < deadline, "Available never became {status}/{reason}; last {got:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Register, wait for Available, use flunders through kubectl with the
/// caller's identity forwarded; the backend stops and comes back.
#[test]
fn aggregated_server_through_kubectl() {
    let (mut server, _tokens) = start_server();
    let mut sample = Sample::start(&server);

    // The ConfigMap backends read the front-proxy CA from.
    let cm = server.kubectl_json(&["get", "configmap", "-n", "kube-system", "extension-apiserver-authentication"]);
    let proxy_ca = std::fs::read_to_string(&sample.proxy_ca).expect("front-proxy CA");
    assert_eq!(cm["data"]["requestheader-client-ca-file"], proxy_ca);
    assert_eq!(cm["data"]["requestheader-allowed-names"], "[\"front-proxy-client\"]");
    assert_eq!(cm["data"]["requestheader-username-headers"], "[\"X-Remote-User\"]");
    assert_eq!(cm["data"]["requestheader-group-headers"], "[\"X-Remote-Group\"]");
    assert_eq!(cm["data"]["requestheader-extra-headers-prefix"], "[\"X-Remote-Extra-\"]");
    assert!(cm["data"]["client-ca-file"].as_str().is_some_and(|s| s.contains("BEGIN CERTIFICATE")), "{cm}");

    server.kubectl(&["create", "namespace", "wardle"]);
    server.create(SERVICE);
    server.create(&apiservice_yaml("api", sample.port, &sample.ca_bundle()));
    server.kubectl(&["wait", "--for=condition=Available", &format!("apiservice/{APISERVICE}"), "--timeout=60s"]);
    let (_, reason, _) = available(&server);
    assert_eq!(reason, "Passed");

    // The table: the remote one names its Service, built-ins are Local.
    let rows = e2e::table(&server.kubectl(&["get", "apiservices"]));
    let row = |name: &str| {
        rows.iter().find(|r| r["NAME"] == name).unwrap_or_else(|| panic!("no APIService {name} in {rows:?}")).clone()
    };
    assert_eq!(row(APISERVICE)["SERVICE"], "wardle/api");
    assert_eq!(row(APISERVICE)["AVAILABLE"], "True");
    for local in ["v1.", "v1.apps", "v1.apiregistration.k8s.io"] {
        assert_eq!(row(local)["SERVICE"], "Local", "{local}");
        assert_eq!(row(local)["AVAILABLE"], "True", "{local}");
    }

    // Discovery: legacy /apis, the group, and kubectl's own view.
    let apis = server.raw("/apis");
    let groups: Vec<&str> = apis["groups"].as_array().unwrap().iter().filter_map(|g| g["name"].as_str()).collect();
    assert!(groups.contains(&"wardle.example.com"), "{groups:?}");
    // groupPriorityMinimum 1000 sorts after every built-in group.
    assert_eq!(groups.first(), Some(&"apiregistration.k8s.io"), "{groups:?}");
    assert_eq!(groups.last(), Some(&"wardle.example.com"), "{groups:?}");
    let group = server.raw("/apis/wardle.example.com");
    assert_eq!(group["preferredVersion"]["groupVersion"], "wardle.example.com/v1alpha1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = server.kubectl(&["api-resources", "--api-group", "wardle.example.com"]);
        let rows = e2e::table(&out);
        if let Some(r) = rows.iter().find(|r| r["NAME"] == "flunders") {
            assert_eq!(r["SHORTNAMES"], "fl");
            assert_eq!(r["APIVERSION"], "wardle.example.com/v1alpha1");
            assert_eq!(r["NAMESPACED"], "true");
            assert_eq!(r["KIND"], "Flunder");
            break;
        }
        assert!(Instant::now() < deadline, "kubectl api-resources never listed flunders:\n{out}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Created as the token user: the backend sees alice, not the token.
    // (Only her token: beside the admin certificate the certificate would
    // win, as upstream's authenticator union puts x509 first.) The main
    // server authorizes her before proxying, through her group.
    server.kubectl(&["create", "role", "flunder-writer", "-n", "wardle", "--verb=create", "--resource=flunders"]);
    server.kubectl(&[
        "create",
        "rolebinding",
        "wardle-devs",
        "-n",
        "wardle",
        "--role=flunder-writer",
        "--group=wardle-devs",
    ]);
    let alice = server.user_kubeconfig("alice", &format!("{{token: {TOKEN}}}"));
    e2e::eventually("alice may create flunders", || {
        let r =
            server.run_env(&["auth", "can-i", "create", "flunders", "-n", "wardle"], None, &[("KUBECONFIG", &alice)]);
        r.stdout == "yes\n"
    });
    let r = server.run_env(&["create", "-f", "-"], Some(&flunder("from-alice")), &[("KUBECONFIG", &alice)]);
    assert_eq!(r.code, 0, "{r:?}");
    let f = server.kubectl_json(&["get", "flunder", "from-alice", "-n", "wardle"]);
    let ann = &f["metadata"]["annotations"];
    assert_eq!(ann["wardle.example.com/user"], "alice", "{f}");
    let groups = ann["wardle.example.com/groups"].as_str().unwrap_or_default();
    for g in ["wardle-devs", "qa", "system:authenticated"] {
        assert!(groups.split(',').any(|x| x == g), "groups {groups:?} lack {g}");
    }
    assert_eq!(ann["wardle.example.com/authorization"], "absent", "{f}");
    // Straight to the backend, tokens are what kube-apiserver's TokenReview
    // says and requests what its SubjectAccessReview allows, in upstream's
    // words.
    let flunders = "/apis/wardle.example.com/v1alpha1/namespaces/wardle/flunders";
    let direct = r#"{"apiVersion":"wardle.example.com/v1alpha1","kind":"Flunder","metadata":{"name":"direct"}}"#;
    let (code, created) = sample.call("POST", flunders, TOKEN, Some(direct));
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["annotations"]["wardle.example.com/user"], "alice", "{created}");
    let (code, denied) = sample.call("GET", flunders, TOKEN, None);
    assert_eq!((code, denied["reason"].as_str()), (403, Some("Forbidden")), "{denied}");
    assert_eq!(
        denied["message"],
        r#"flunders.wardle.example.com is forbidden: User "alice" cannot list resource "flunders" in API group "wardle.example.com" in the namespace "wardle""#
    );
    let (code, denied) = sample.call("POST", flunders, BOB_TOKEN, Some(direct));
    assert_eq!(code, 403, "{denied}");
    assert!(denied["message"].as_str().is_some_and(|m| m.contains(r#"User "bob" cannot create resource "flunders""#)));
    let (code, refused) = sample.call("GET", flunders, "not-a-token", None);
    assert_eq!((code, refused["reason"].as_str()), (401, Some("Unauthorized")), "{refused}");
    // Health needs no review.
    let (code, _) = sample.call("GET", "/healthz", BOB_TOKEN, None);
    assert_eq!(code, 200);
    server.kubectl(&["delete", "flunder", "direct", "-n", "wardle"]);

    // Created as admin (client certificate): the admin identity arrives.
    server.create(&flunder("from-admin"));
    let f = server.kubectl_json(&["get", "fl", "from-admin", "-n", "wardle"]);
    assert_eq!(f["metadata"]["annotations"]["wardle.example.com/user"], "admin", "{f}");
    assert!(f["metadata"]["annotations"]["wardle.example.com/groups"]
        .as_str()
        .unwrap_or("")
        .contains("system:masters"));
    let names = e2e::table_names(&server.kubectl(&["get", "flunders", "-n", "wardle"]));
    assert_eq!(names, vec!["from-admin", "from-alice"]);

    // A watch through the proxy streams events as they happen.
    let mut watch = server
        .kubectl_cmd()
        .args(["get", "flunders", "-n", "wardle", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting kubectl get -w");
    let stdout = watch.stdout.take().expect("stdout was piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // Table rows: EVENT NAME AGE.
    let wait_line = |seen: &mut Vec<String>, event: &str, name: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let matches = |l: &String| l.split_whitespace().take(2).eq([event, name]);
        while !seen.iter().any(matches) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(_) => panic!("the watch never showed {event} {name}; saw {seen:?}"),
            }
        }
    };
    wait_line(&mut seen, "ADDED", "from-alice");
    server.create(&flunder("while-watching"));
    wait_line(&mut seen, "ADDED", "while-watching");
    server.kubectl(&["delete", "flunder", "while-watching", "-n", "wardle"]);
    wait_line(&mut seen, "DELETED", "while-watching");
    let _ = watch.kill();
    let _ = watch.wait();

    // The backend goes away: unavailable, and requests get a 503 Status.
    sample.stop();
    let (_, _, message) = wait_available(&server, "False", "FailedDiscoveryCheck");
    assert!(message.contains("failing or missing response from https://localhost:"), "{message}");
    let r = server.curl("GET", "/apis/wardle.example.com/v1alpha1/namespaces/wardle/flunders", Cred::Admin, &[], None);
    r.assert_status(503, "ServiceUnavailable");
    let row = e2e::table(&server.kubectl(&["get", "apiservice", APISERVICE]));
    assert_eq!(row[0]["AVAILABLE"], "False (FailedDiscoveryCheck)");
    // The rest of the server and its discovery are unaffected.
    server.kubectl(&["get", "namespaces"]);
    assert!(server.raw("/apis")["groups"].as_array().unwrap().iter().any(|g| g["name"] == "apps"));

    // It comes back on the same port with the same objects.
    sample.launch();
    server.kubectl(&["wait", "--for=condition=Available", &format!("apiservice/{APISERVICE}"), "--timeout=60s"]);
    let names = e2e::table_names(&server.kubectl(&["get", "flunders", "-n", "wardle"]));
    assert_eq!(names, vec!["from-admin", "from-alice"]);
    server.assert_healthy();
}

/// An APIService whose Service does not exist is ServiceNotFound and its
/// requests are 503; it turns available once the Service appears, and
/// deleting the APIService removes the group from discovery.
#[test]
fn missing_service_then_found() {
    let (server, _tokens) = start_server();
    let sample = Sample::start(&server);
    server.kubectl(&["create", "namespace", "wardle"]);
    server.create(&apiservice_yaml("api", sample.port, &sample.ca_bundle()));
    let (_, _, message) = wait_available(&server, "False", "ServiceNotFound");
    assert_eq!(message, "service/api in \"wardle\" is not present");
    let r = server.curl("GET", "/apis/wardle.example.com/v1alpha1/flunders", Cred::Admin, &[], None);
    r.assert_status(503, "ServiceUnavailable");
    // A broken backend leaves everything else working, kubectl included.
    server.kubectl(&["get", "namespaces"]);
    server.kubectl(&["get", "deployments", "-A"]);

    server.create(SERVICE);
    wait_available(&server, "True", "Passed");
    server.kubectl(&["get", "flunders", "-A"]);

    server.kubectl(&["delete", "apiservice", APISERVICE]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let apis = server.raw("/apis");
        if !apis["groups"].as_array().unwrap().iter().any(|g| g["name"] == "wardle.example.com") {
            break;
        }
        assert!(Instant::now() < deadline, "wardle.example.com stayed in /apis after its APIService went");
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = server.curl("GET", "/apis/wardle.example.com/v1alpha1/flunders", Cred::Admin, &[], None);
    r.assert_status(404, "NotFound");
}

/// Upstream's validation of APIServices, and the Local ones that follow the
/// groups the server serves (a CRD's group appears and disappears).
#[test]
fn apiservice_validation_and_local_registration() {
    let server = Server::start();
    let err = server.kubectl_fails(
        &["create", "-f", "-"],
        Some(
            "apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1.wrong.example.com
spec:
  group: other.example.com
  version: v1
  groupPriorityMinimum: 30000
  versionPriority: 15
  insecureSkipTLSVerify: true
",
        ),
    );
    assert!(err.contains("metadata.name: Invalid value: \"v1.wrong.example.com\""), "{err}");
    assert!(err.contains("spec.groupPriorityMinimum"), "{err}");
    assert!(err.contains("local APIServices may not have insecureSkipTLSVerify"), "{err}");

    let local = server.kubectl_json(&["get", "apiservice", "v1.apps"]);
    assert_eq!(local["spec"]["groupPriorityMinimum"], 17800);
    assert!(local["spec"].get("service").is_none());
    server.create(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
",
    );
    // Autoregistration follows the served groups within a second or so.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.run(&["get", "apiservice", "v1.stable.example.com"], None).code != 0 {
        assert!(Instant::now() < deadline, "no Local APIService appeared for the CRD's group");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kubectl(&["wait", "--for=condition=Available", "apiservice/v1.stable.example.com", "--timeout=30s"]);
    let crd = server.kubectl_json(&["get", "apiservice", "v1.stable.example.com"]);
    assert_eq!(crd["spec"]["groupPriorityMinimum"], 1000);
    assert_eq!(crd["spec"]["versionPriority"], 100);
    assert_eq!(crd["metadata"]["labels"][MANAGED], "true");
    // A CRD group's APIService is kept as wanted: deleted, it comes back;
    // changed, it is changed back. The change prompts a pass: well within
    // the 30 s between passes that nothing prompts.
    server.kubectl(&["delete", "apiservice", "v1.stable.example.com"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.run(&["get", "apiservice", "v1.stable.example.com"], None).code != 0 {
        assert!(Instant::now() < deadline, "the CRD group's deleted APIService was not made again");
        std::thread::sleep(Duration::from_millis(100));
    }
    let priority = |name: &str| server.kubectl_json(&["get", "apiservice", name])["spec"]["versionPriority"].clone();
    server.kubectl(&[
        "patch",
        "apiservice",
        "v1.stable.example.com",
        "--type=merge",
        "-p",
        r#"{"spec":{"versionPriority":7}}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while priority("v1.stable.example.com") != 100 {
        assert!(Instant::now() < deadline, "the CRD group's changed APIService was not changed back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let apis = server.raw("/apis");
    let groups: Vec<&str> = apis["groups"].as_array().unwrap().iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(groups.last(), Some(&"stable.example.com"), "{groups:?}");
    server.kubectl(&["delete", "crd", "widgets.stable.example.com"]);
    server.kubectl(&["wait", "--for=delete", "apiservice/v1.stable.example.com", "--timeout=30s"]);
    // A built-in group's ("onstart") was synced when the server started and
    // is its users' from then on, as upstream: a change or a deletion stays
    // (the change to an APIService prompts a pass at once).
    assert_eq!(server.kubectl_json(&["get", "apiservice", "v1.apps"])["metadata"]["labels"][MANAGED], "onstart");
    server.kubectl(&["patch", "apiservice", "v1.apps", "--type=merge", "-p", r#"{"spec":{"versionPriority":7}}"#]);
    server.kubectl(&["delete", "apiservice", "v1.coordination.k8s.io"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(priority("v1.apps"), 7, "an onstart APIService was changed back");
    let gone = server.run(&["get", "apiservice", "v1.coordination.k8s.io"], None);
    assert!(
        gone.code != 0 && gone.stderr.contains("NotFound"),
        "an onstart APIService was made again: {}",
        gone.stdout
    );
}

e2e::on_etcd!(aggregated_server_through_kubectl);
