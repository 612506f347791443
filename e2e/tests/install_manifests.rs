//! Install manifests shaped like those of widely used projects (an ingress
//! controller, a monitoring operator, a GitOps tool, a certificate manager:
//! the same kinds, fields and multi-document layout, written for these
//! tests) install as on a real cluster: `kubectl apply` creates everything, a
//! re-apply changes nothing, `kubectl get all -A` lists the workloads,
//! `kubectl delete -f` removes everything, and the same holds for
//! `kubectl apply --server-side`.

use std::collections::BTreeMap;
use std::path::Path;

use e2e::Server;
use serde_json::Value;

const MANIFESTS: &[(&str, &str)] = &[
    ("ingress-controller.yaml", include_str!("fixtures/install/ingress-controller.yaml")),
    ("monitoring-operator.yaml", include_str!("fixtures/install/monitoring-operator.yaml")),
    ("gitops.yaml", include_str!("fixtures/install/gitops.yaml")),
    ("cert-manager.yaml", include_str!("fixtures/install/cert-manager.yaml")),
];

fn documents(yaml: &str) -> usize {
    yaml.split("\n---\n").filter(|d| d.lines().any(|l| l.starts_with("kind:"))).count()
}

/// Every line of kubectl's output ends with `verb`, one line per document.
#[track_caller]
fn each_line(out: &str, verb: &str, expected: usize, what: &str) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), expected, "{what}: one line per object:\n{out}");
    for l in lines {
        assert!(l.ends_with(verb), "{what}: {l:?} should end with {verb:?}:\n{out}");
    }
}

/// The file's documents with its Namespaces last: deleting a namespace first
/// lets the namespace controller remove its contents before kubectl asks for
/// them, and kubectl then reports them NotFound (as on a real cluster whose
/// controller is quick enough).
fn namespaces_last(yaml: &str) -> String {
    let (namespaces, rest): (Vec<&str>, Vec<&str>) =
        yaml.split("\n---\n").partition(|d| d.lines().any(|l| l == "kind: Namespace"));
    rest.into_iter().chain(namespaces).collect::<Vec<_>>().join("\n---\n")
}

/// The resourceVersion of every object in the file, by kind and name.
fn versions(s: &Server, path: &Path) -> BTreeMap<String, String> {
    let list = s.kubectl_json(&["get", "-f", path.to_str().unwrap_or_default(), "-o", "json"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let key = format!(
                "{}/{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            );
            (key, o["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

#[track_caller]
fn gone(s: &Server, path: &str, expected: usize) {
    let r = s.run(&["get", "-f", path, "--ignore-not-found", "-o", "name"], None);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "everything was deleted: {r:?}");
    let r = s.run(&["get", "-f", path], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stderr.matches("NotFound").count(), expected, "{}", r.stderr);
}

#[test]
fn install_manifests_apply_reapply_and_delete() {
    let s = Server::start();
    for (file, yaml) in MANIFESTS {
        let n = documents(yaml);
        let path = s.write_file(file, yaml);
        let p = path.to_str().expect("a UTF-8 path");
        let deletion = s.write_file(&format!("delete-{file}"), namespaces_last(yaml));
        let d = deletion.to_str().expect("a UTF-8 path");

        each_line(&s.kubectl(&["apply", "-f", p]), " created", n, file);
        let applied = versions(&s, &path);
        let again = s.kubectl(&["apply", "-f", p]);
        // kubectl sends an atomic list whole once the server has defaulted a
        // field inside it (a webhook's rules get `scope`, a network policy's
        // ports get `protocol`) and a budget's selector (patch strategy
        // "replace") always, and says "configured", as against a real
        // cluster; the stored objects stay as they were.
        let atomic_defaults = |l: &str| {
            ["validatingwebhookconfiguration", "mutatingwebhookconfiguration", "poddisruptionbudget", "networkpolicy"]
                .iter()
                .any(|k| l.starts_with(k))
        };
        let unchanged: String = again.lines().filter(|l| !atomic_defaults(l)).map(|l| format!("{l}\n")).collect();
        let resent = again.lines().filter(|l| atomic_defaults(l)).count();
        each_line(&unchanged, " unchanged", n - resent, file);
        assert_eq!(versions(&s, &path), applied, "{file}: a re-apply changes nothing");

        let all = s.kubectl(&["get", "all", "-A", "-o", "name"]);
        for doc in yaml.split("\n---\n") {
            let kind = doc.lines().find_map(|l| l.strip_prefix("kind: ")).unwrap_or("");
            let name =
                doc.lines().skip_while(|l| *l != "metadata:").find_map(|l| l.strip_prefix("  name: ")).unwrap_or("");
            let listed = match kind {
                "Deployment" => format!("deployment.apps/{name}"),
                "StatefulSet" => format!("statefulset.apps/{name}"),
                "DaemonSet" => format!("daemonset.apps/{name}"),
                "Job" => format!("job.batch/{name}"),
                "Service" => format!("service/{name}"),
                _ => continue,
            };
            assert!(all.lines().any(|l| l == listed), "{file}: `get all -A` lacks {listed}:\n{all}");
        }

        each_line(&s.kubectl(&["delete", "-f", d]), " deleted", n, file);
        gone(&s, p, n);

        each_line(&s.kubectl(&["apply", "--server-side", "-f", p]), " serverside-applied", n, file);
        let before = versions(&s, &path);
        assert_eq!(before.len(), n, "{file}: {before:?}");
        each_line(&s.kubectl(&["apply", "--server-side", "-f", p]), " serverside-applied", n, file);
        assert_eq!(versions(&s, &path), before, "{file}: a server-side re-apply changes nothing");
        each_line(&s.kubectl(&["delete", "-f", d]), " deleted", n, file);
        gone(&s, p, n);
    }
}

/// Operators elect a leader through a Lease they create and then renew.
#[test]
fn leader_election_lease() {
    let s = Server::start();
    let lease = |renew: &str| {
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: certs-controller, namespace: kube-system}}\nspec:\n  holderIdentity: certs-7d9f_1\n  leaseDurationSeconds: 60\n  acquireTime: '2026-01-01T00:00:00.000000Z'\n  renewTime: '{renew}'\n  leaseTransitions: 0\n"
        )
    };
    assert_eq!(s.create(&lease("2026-01-01T00:00:00.000000Z")), "lease.coordination.k8s.io/certs-controller created\n");
    s.kubectl_stdin(&["replace", "-f", "-"], Some(&lease("2026-01-01T00:00:15.123456Z")));
    let got: Value = s.kubectl_json(&["get", "lease", "certs-controller", "-n", "kube-system", "-o", "json"]);
    assert_eq!(got["spec"]["renewTime"], "2026-01-01T00:00:15.123456Z", "{got}");
    assert_eq!(got["spec"]["holderIdentity"], "certs-7d9f_1");
}
