//! The CSI kinds of storage.k8s.io/v1 (upstream pkg/registry/storage/
//! csidriver, csinode, csistoragecapacity, volumeattachment): their defaults,
//! validation with upstream's paths, VolumeAttachment's fixed spec and status
//! subresource, and their tables. They share the CSI driver name rule.

use serde_json::{json, Value};

use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, CSIStorageCapacity, VolumeAttachment};

use generic_server::meta::{is_dns1123_subdomain, qualified_name_problem};
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::resourcequota::validate_quantity;
use super::{age, arr_at, default_field, str_at, too_long_cause};

pub fn registrations() -> Vec<Registration> {
    vec![
        Registration::of::<CSIDriver>(CSIDriverStrategy).returns_deleted_object(),
        Registration::of::<CSINode>(CSINodeStrategy).returns_deleted_object(),
        Registration::of::<CSIStorageCapacity>(CSIStorageCapacityStrategy),
        Registration::of::<VolumeAttachment>(VolumeAttachmentStrategy).status().returns_deleted_object(),
    ]
}

/// Upstream's ValidateCSIDriverName.
fn validate_driver_name(name: &str, field: &str, causes: &mut Vec<Cause>) {
    if name.is_empty() {
        causes.push(Cause::required(field, ""));
    }
    if name.len() > 63 {
        causes.push(too_long_cause(field, 63));
    }
    if let Some(p) = is_dns1123_subdomain(&name.to_lowercase()) {
        causes.push(Cause::invalid(field, &json!(name), &p));
    }
}

fn name_cell(obj: &Value) -> Value {
    json!(generic_server::meta::name(obj))
}

pub struct CSIDriverStrategy;

const FS_GROUP_POLICIES: &[&str] = &["File", "None", "ReadWriteOnceWithFSType"];
const LIFECYCLE_MODES: &[&str] = &["Ephemeral", "Persistent"];

impl Strategy for CSIDriverStrategy {
    fn default(&self, obj: &mut Value) {
        let spec = super::child(obj, "spec");
        default_field(spec, "attachRequired", json!(true));
        default_field(spec, "podInfoOnMount", json!(false));
        default_field(spec, "storageCapacity", json!(false));
        default_field(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
        default_field(spec, "requiresRepublish", json!(false));
        default_field(spec, "seLinuxMount", json!(false));
        if spec.get("volumeLifecycleModes").and_then(Value::as_array).is_none_or(Vec::is_empty) {
            spec.insert("volumeLifecycleModes".into(), json!(["Persistent"]));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        // Upstream checks the driver's name at the path "name".
        validate_driver_name(generic_server::meta::name(obj), "name", &mut causes);
        if let Some(p) = obj.pointer("/spec/fsGroupPolicy").filter(|p| !p.is_null()) {
            if !p.as_str().is_some_and(|p| FS_GROUP_POLICIES.contains(&p)) {
                causes.push(Cause::not_supported("spec.fsGroupPolicy", p, FS_GROUP_POLICIES));
            }
        }
        for (i, m) in arr_at(obj, "/spec/volumeLifecycleModes").iter().enumerate() {
            if !m.as_str().is_some_and(|m| LIFECYCLE_MODES.contains(&m)) {
                causes.push(Cause::not_supported(format!("spec.volumeLifecycleModes[{i}]"), m, LIFECYCLE_MODES));
            }
        }
        let mut audiences = Vec::new();
        for (i, t) in arr_at(obj, "/spec/tokenRequests").iter().enumerate() {
            let audience = str_at(t, "/audience");
            if audiences.contains(&audience) {
                causes.push(Cause::duplicate(format!("spec.tokenRequests[{i}].audience"), &json!(audience)));
            }
            audiences.push(audience);
            if let Some(secs) = t.get("expirationSeconds").and_then(Value::as_i64) {
                if secs < 600 {
                    causes.push(Cause::invalid(
                        format!("spec.tokenRequests[{i}].expirationSeconds"),
                        &json!(secs),
                        "may not specify a duration less than 10 minutes",
                    ));
                } else if secs >= 1 << 32 {
                    causes.push(Cause::invalid(
                        format!("spec.tokenRequests[{i}].expirationSeconds"),
                        &json!(secs),
                        "may not specify a duration larger than 2^32 seconds",
                    ));
                }
            }
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        for field in ["attachRequired", "volumeLifecycleModes"] {
            let pointer = format!("/spec/{field}");
            if new.pointer(&pointer) != old.pointer(&pointer) {
                let shown = new.pointer(&pointer).cloned().unwrap_or(Value::Null);
                causes.push(Cause::immutable(format!("spec.{field}"), &shown));
            }
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("AttachRequired", "boolean", "attachRequired indicates this CSI volume driver requires an attach operation (because it implements the CSI ControllerPublishVolume() method), and that the Kubernetes attach detach controller should call the attach volume interface which checks the volumeattachment status and waits until the volume is attached before proceeding to mounting."),
            TableColumn::new("PodInfoOnMount", "boolean", "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations, if set to true."),
            TableColumn::new("StorageCapacity", "boolean", "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report by creating CSIStorageCapacity objects with capacity information, if set to true."),
            TableColumn::new("TokenRequests", "string", "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication."),
            TableColumn::new("RequiresRepublish", "boolean", "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume."),
            TableColumn::new("Modes", "string", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let flag = |f: &str, d: bool| obj.pointer(&format!("/spec/{f}")).and_then(Value::as_bool).unwrap_or(d);
        let audiences: Vec<&str> = arr_at(obj, "/spec/tokenRequests").iter().map(|t| str_at(t, "/audience")).collect();
        let tokens = if audiences.is_empty() { "<unset>".to_string() } else { audiences.join(",") };
        let modes: Vec<&str> = arr_at(obj, "/spec/volumeLifecycleModes").iter().filter_map(Value::as_str).collect();
        let modes = if modes.is_empty() { "<none>".to_string() } else { modes.join(",") };
        vec![
            name_cell(obj),
            json!(flag("attachRequired", true)),
            json!(flag("podInfoOnMount", false)),
            json!(flag("storageCapacity", false)),
            json!(tokens),
            json!(flag("requiresRepublish", false)),
            json!(modes),
            age(obj),
        ]
    }
}

pub struct CSINodeStrategy;

const MAX_NODE_ID_LEN: usize = 192;

impl Strategy for CSINodeStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let mut names = Vec::new();
        for (i, d) in arr_at(obj, "/spec/drivers").iter().enumerate() {
            let path = format!("spec.drivers[{i}]");
            let name = str_at(d, "/name");
            validate_driver_name(name, &format!("{path}.name"), &mut causes);
            if names.contains(&name) {
                causes.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
            }
            names.push(name);
            let node_id = str_at(d, "/nodeID");
            if node_id.is_empty() {
                causes.push(Cause::required(format!("{path}.nodeID"), ""));
            } else if node_id.len() > MAX_NODE_ID_LEN {
                causes.push(Cause::invalid(
                    format!("{path}.nodeID"),
                    &json!(node_id),
                    &format!("must be {MAX_NODE_ID_LEN} characters or less"),
                ));
            }
            for (j, k) in arr_at(d, "/topologyKeys").iter().enumerate() {
                let key = k.as_str().unwrap_or("");
                if key.is_empty() {
                    causes.push(Cause::required(format!("{path}.topologyKeys[{j}]"), ""));
                } else if let Some(p) = qualified_name_problem(key) {
                    causes.push(Cause::invalid(format!("{path}.topologyKeys[{j}]"), k, &p));
                }
            }
            if let Some(n) = d.pointer("/allocatable/count").and_then(Value::as_i64).filter(|n| *n < 0) {
                causes.push(Cause::invalid(
                    format!("{path}.allocatable.count"),
                    &json!(n),
                    "must be greater than or equal to 0",
                ));
            }
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        // A driver's node ID and topology keys stay as registered.
        for (i, d) in arr_at(new, "/spec/drivers").iter().enumerate() {
            let before = arr_at(old, "/spec/drivers").iter().find(|o| o.get("name") == d.get("name"));
            let Some(before) = before else { continue };
            for field in ["nodeID", "topologyKeys"] {
                if d.get(field) != before.get(field) {
                    let shown = d.get(field).cloned().unwrap_or(Value::Null);
                    causes.push(Cause::immutable(format!("spec.drivers[{i}].{field}"), &shown));
                }
            }
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Drivers", "integer", "drivers is a list of information of all CSI Drivers existing on a node. If all drivers in the list are uninstalled, this can become empty."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        vec![name_cell(obj), json!(arr_at(obj, "/spec/drivers").len()), age(obj)]
    }
}

pub struct CSIStorageCapacityStrategy;

impl Strategy for CSIStorageCapacityStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let class = str_at(obj, "/storageClassName");
        if let Some(p) = is_dns1123_subdomain(class) {
            causes.push(Cause::invalid("storageClassName", &json!(class), &p));
        }
        for field in ["capacity", "maximumVolumeSize"] {
            if let Some(q) = obj.get(field).filter(|q| !q.is_null()) {
                validate_quantity(field, q, field, &mut causes);
            }
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("StorageClassName", "string", "storageClassName represents the name of the StorageClass that the reported capacity applies to. It must meet the same requirements as the name of a StorageClass object (non-empty, DNS subdomain). If that object no longer exists, the CSIStorageCapacity object is obsolete and should be removed by its creator. This field is immutable."),
            TableColumn::new("Capacity", "string", "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields."),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let capacity = obj.get("capacity").and_then(Value::as_str).unwrap_or("<unset>");
        vec![name_cell(obj), json!(str_at(obj, "/storageClassName")), json!(capacity)]
    }
}

pub struct VolumeAttachmentStrategy;

impl Strategy for VolumeAttachmentStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let attacher = str_at(obj, "/spec/attacher");
        if attacher.is_empty() {
            causes.push(Cause::required("spec.attacher", ""));
        }
        let inline = obj.pointer("/spec/source/inlineVolumeSpec").is_some_and(Value::is_object);
        let pv = obj.pointer("/spec/source/persistentVolumeName").and_then(Value::as_str);
        const ONE: &str = "must specify exactly one of inlineVolumeSpec and persistentVolumeName";
        match (inline, pv) {
            (false, None) => causes.push(Cause::required("spec.source", ONE)),
            (true, Some(_)) => causes.push(Cause::forbidden("spec.source", ONE)),
            (false, Some("")) => causes.push(Cause::required(
                "spec.source.persistentVolumeName",
                "must specify non empty persistentVolumeName",
            )),
            _ => {}
        }
        let node = str_at(obj, "/spec/nodeName");
        if let Some(p) = is_dns1123_subdomain(node) {
            causes.push(Cause::invalid("spec.nodeName", &json!(node), &p));
        }
        if !attacher.is_empty() {
            validate_driver_name(attacher, "spec.attacher", &mut causes);
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        if new.get("spec") != old.get("spec") {
            causes.push(Cause::immutable("spec", new.get("spec").unwrap_or(&Value::Null)));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        let mut attacher = TableColumn::new("Attacher", "string", "attacher indicates the name of the volume driver that MUST handle this request. This is the name returned by GetPluginName().");
        attacher.format = "name".into();
        vec![
            TableColumn::name_column(),
            attacher,
            TableColumn::new("PV", "string", "persistentVolumeName represents the name of the persistent volume to attach."),
            TableColumn::new("Node", "string", "nodeName represents the node that the volume should be attached to."),
            TableColumn::new("Attached", "boolean", "attached indicates the volume is successfully attached. This field must only be set by the entity completing the attach operation, i.e. the external-attacher."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let attached = obj.pointer("/status/attached").and_then(Value::as_bool).unwrap_or(false);
        vec![
            name_cell(obj),
            json!(str_at(obj, "/spec/attacher")),
            json!(str_at(obj, "/spec/source/persistentVolumeName")),
            json!(str_at(obj, "/spec/nodeName")),
            json!(attached),
            age(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::full_message).collect()
    }

    #[test]
    fn csidriver_defaults_and_immutability() {
        let s = CSIDriverStrategy;
        let mut d = json!({"metadata": {"name": "csi.example.com"}});
        s.default(&mut d);
        assert_eq!(d["spec"]["attachRequired"], true);
        assert_eq!(d["spec"]["volumeLifecycleModes"], json!(["Persistent"]));
        assert!(s.validate(&d).is_empty());
        let mut changed = d.clone();
        changed["spec"]["attachRequired"] = json!(false);
        assert_eq!(
            messages(s.validate_update(&changed, &d)),
            ["spec.attachRequired: Invalid value: false: field is immutable"]
        );
        assert_eq!(s.table_row(&d)[4], "<unset>");
    }

    #[test]
    fn csinode_and_attachments() {
        let node = json!({"spec": {"drivers": [{"name": "a.io", "nodeID": "n"}, {"name": "a.io"}]}});
        assert_eq!(
            messages(CSINodeStrategy.validate(&node)),
            ["spec.drivers[1].name: Duplicate value: \"a.io\"", "spec.drivers[1].nodeID: Required value"]
        );
        let va = json!({"spec": {"attacher": "a.io", "nodeName": "n1", "source": {}}});
        assert_eq!(
            messages(VolumeAttachmentStrategy.validate(&va)),
            ["spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName"]
        );
        let cap = json!({"storageClassName": "fast", "capacity": "-1Gi"});
        assert_eq!(
            messages(CSIStorageCapacityStrategy.validate(&cap)),
            ["capacity: Invalid value: \"-1Gi\": must be greater than or equal to 0"]
        );
    }
}
