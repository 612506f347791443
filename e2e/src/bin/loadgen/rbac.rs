//! rbac: GET at resourceVersion=0 as a user whom RBAC authorizes, with many
//! RoleBindings and ClusterRoleBindings in the cluster (half of each, for
//! other users; the reader's own RoleBinding made last), against the same
//! GETs as system:masters, which RBAC never consults. The reader presents a
//! client certificate issued by the server's CA; that it is no admin is
//! checked (a read outside its namespace is forbidden) before measuring.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::client::{Client, Creds};
use crate::driver::{alternate, drive, pick, Sample};
use crate::targets::{configmap, ApiTarget, Target};
use crate::Run;

const READER: &str = "loadgen-reader";
const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";
pub const AS_ADMIN: &str = "GET resourceVersion=0 as system:masters";
pub const AS_READER: &str = "GET resourceVersion=0 as a user authorized by RBAC";

pub async fn run(run: &mut Run, creds: &Creds, pki: Option<&Path>, backend: &str, prefix: &str) {
    let Some(pki) = pki else {
        run.skip("rbac", format!("{backend}: needs the CA of a server loadgen started, to issue a user's certificate"));
        return;
    };
    let result = measure(run, creds, pki, backend, prefix).await;
    if let Err(e) = result {
        run.skip("rbac", format!("{backend}: {e}"));
    }
    // Later scenarios should not pay for the bindings.
    if let Ok(client) = Client::connect(creds, 1).await {
        let path = format!("{RBAC}/clusterrolebindings?labelSelector=loadgen%3D{prefix}");
        if let Err(e) = client.ok(hyper::Method::DELETE, &path, None).await {
            eprintln!("rbac: removing the ClusterRoleBindings: {e}");
        }
        let _ = client.request(hyper::Method::DELETE, &format!("/api/v1/namespaces/{prefix}-rbac"), None).await;
    }
}

async fn post(client: &Client, path: &str, body: Value) -> Result<u64, String> {
    Ok(client.ok(hyper::Method::POST, path, Some(Bytes::from(body.to_string()))).await?.len() as u64)
}

async fn measure(run: &mut Run, creds: &Creds, pki: &Path, backend: &str, prefix: &str) -> Result<(), String> {
    let admin = Client::connect(creds, 1).await?;
    let ns = format!("{prefix}-rbac");
    let admin_target = ApiTarget::json(admin.clone());
    admin_target.prepare(&ns).await?;
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": READER, "namespace": ns},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]});
    post(&admin, &format!("{RBAC}/namespaces/{ns}/roles"), role).await?;

    // Everyone else's bindings, half namespaced (in the reader's namespace,
    // where a scan would look), half cluster-wide.
    let others = run.s.bindings.saturating_sub(1);
    let (c, n, label) = (admin.clone(), ns.clone(), prefix.to_string());
    let made = drive(run.s.concurrency, std::time::Duration::from_secs(run.s.load_cap_secs), Some(others), move |k| {
        let (c, ns, label) = (c.clone(), n.clone(), label.clone());
        async move {
            let subject = json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": format!("loadgen-other-{k}")}]);
            let name = format!("{label}-other-{k}");
            let meta = json!({"name": name, "labels": {"loadgen": label}});
            if k % 2 == 0 {
                let b = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": meta, "subjects": subject,
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}});
                post(&c, &format!("{RBAC}/clusterrolebindings"), b).await
            } else {
                let b = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": meta, "subjects": subject,
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": READER}});
                post(&c, &format!("{RBAC}/namespaces/{ns}/rolebindings"), b).await
            }
        }
    })
    .await
    .summary();
    if made.errors > 0 || made.ops != others {
        return Err(format!(
            "made {} of {others} bindings ({} errors, e.g. {:?})",
            made.ops,
            made.errors,
            made.error_samples.first()
        ));
    }
    let mine = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": READER, "namespace": ns},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": READER}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": READER}});
    post(&admin, &format!("{RBAC}/namespaces/{ns}/rolebindings"), mine).await?;

    let population = run.s.list_objects.clamp(1, 100);
    for i in 0..population {
        admin_target.create(&ns, i, configmap(&ns, i, run.s.object_bytes, &[])).await?;
    }
    let reader = Client::connect(&creds.as_user(pki, READER, &[])?, 1).await?;
    let reader_target: Arc<dyn Target> = Arc::new(ApiTarget::json(reader.clone()));
    // The reader reads what its binding grants and nothing beyond it.
    reader_target.get(&ns, 0, true).await.map_err(|e| format!("the reader cannot read its namespace: {e}"))?;
    let elsewhere = reader.request(hyper::Method::GET, "/api/v1/namespaces/default/configmaps", None).await?;
    if elsewhere.status != 403 {
        return Err(format!("the reader's list outside its namespace answered {}, not 403", elsewhere.status));
    }

    // In alternating rounds, so a drift or a stall weighs on both alike.
    let admin_target: Arc<dyn Target> = Arc::new(admin_target);
    let (seed, conc) = (run.s.seed, run.s.concurrency);
    let gets = |target: &Arc<dyn Target>, _| {
        let (target, sc) = (target.clone(), ns.clone());
        move |i| {
            let (t, sc) = (target.clone(), sc.clone());
            async move { t.get(&sc, pick(seed, i, population), true).await }
        }
    };
    let samples = alternate(conc, run.s.duration(), &[admin_target, reader_target], gets).await;
    let [as_admin, as_reader]: [Sample; 2] =
        samples.try_into().map_err(|_| "alternate gives one sample per variant".to_string())?;
    run.push("rbac", AS_ADMIN, Some(backend), as_admin.summary());
    run.push("rbac", &format!("{AS_READER} ({} bindings)", run.s.bindings), Some(backend), as_reader.summary());
    Ok(())
}
