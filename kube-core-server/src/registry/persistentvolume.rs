//! core/v1 persistentvolumes and persistentvolumeclaims (upstream
//! pkg/registry/core/persistentvolume and persistentvolumeclaim): defaults
//! (Retain, Filesystem, Pending), access modes, capacity and volume source
//! validation, the update rules (a volume's source and a claim's spec are
//! fixed), status subresources, the `name` field selector and the tables.

use serde_json::{json, Map, Value};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use generic_server::meta::is_dns1123_subdomain;
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::label_selector::validate_label_selector;
use super::podspec::parse_quantity;
use super::{age, arr_at, child, default_field, map_at, str_at};

pub fn registrations() -> Vec<Registration> {
    vec![
        Registration::of::<PersistentVolume>(PersistentVolumeStrategy)
            .short_names(&["pv"])
            .status()
            .returns_deleted_object(),
        Registration::of::<PersistentVolumeClaim>(PersistentVolumeClaimStrategy)
            .short_names(&["pvc"])
            .status()
            .returns_deleted_object(),
    ]
}

const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];

/// The volume sources a PersistentVolume may name (exactly one).
const VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

const HOST_PATH_TYPES: &[&str] =
    &["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];

fn validate_access_modes(spec: &Value, required_detail: &str, causes: &mut Vec<Cause>) {
    let modes = arr_at(spec, "/accessModes");
    if modes.is_empty() {
        causes.push(Cause::required("spec.accessModes", required_detail));
    }
    for m in modes {
        if !m.as_str().is_some_and(|m| ACCESS_MODES.contains(&m)) {
            causes.push(Cause::not_supported("spec.accessModes", m, ACCESS_MODES));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        causes.push(Cause::forbidden("spec.accessModes", "may not use ReadWriteOncePod with other access modes"));
    }
}

fn validate_common(spec: &Value, causes: &mut Vec<Cause>) {
    let class = str_at(spec, "/storageClassName");
    if let Some(p) = (!class.is_empty()).then(|| is_dns1123_subdomain(class)).flatten() {
        causes.push(Cause::invalid("spec.storageClassName", &json!(class), &p));
    }
    if let Some(m) = spec.get("volumeMode").filter(|m| !m.is_null()) {
        if !m.as_str().is_some_and(|m| VOLUME_MODES.contains(&m)) {
            causes.push(Cause::not_supported("spec.volumeMode", m, VOLUME_MODES));
        }
    }
}

/// Upstream's GetAccessModesAsString: RWO, ROX, RWX, RWOP in that order.
fn access_modes_cell(modes: &[Value]) -> String {
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(m, _)| modes.iter().any(|x| x == m))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// The class, from spec.storageClassName or the beta annotation.
fn class_cell(obj: &Value) -> String {
    let annotated = map_at(obj, "/metadata/annotations")
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .and_then(Value::as_str);
    annotated.unwrap_or_else(|| str_at(obj, "/spec/storageClassName")).to_string()
}

fn phase_cell(obj: &Value) -> String {
    if generic_server::meta::meta_str(obj, "deletionTimestamp").is_empty() {
        str_at(obj, "/status/phase").to_string()
    } else {
        "Terminating".into()
    }
}

fn unset_or(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("<unset>").to_string()
}

/// A new object's status as upstream's PrepareForCreate leaves it.
fn fresh_status(obj: &mut Value, status: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
    }
}

pub struct PersistentVolumeStrategy;

impl Strategy for PersistentVolumeStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        let now = generic_server::meta::now_rfc3339();
        fresh_status(obj, json!({"phase": "Pending", "lastPhaseTransitionTime": now}));
    }

    fn default(&self, obj: &mut Value) {
        let spec = child(obj, "spec");
        default_field(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        default_field(spec, "volumeMode", json!("Filesystem"));
        if let Some(Value::Object(hp)) = spec.get_mut("hostPath") {
            default_field(hp, "type", json!(""));
        }
        default_field(child(obj, "status"), "phase", json!("Pending"));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validate_access_modes(spec, "", &mut causes);
        let capacity = map_at(spec, "/capacity");
        match capacity {
            None => causes.push(Cause::required("spec.capacity", "")),
            Some(c) if c.is_empty() => causes.push(Cause::required("spec.capacity", "")),
            Some(c) if !c.contains_key("storage") || c.len() > 1 => {
                let keys: Vec<String> = c.keys().map(|k| format!("{k:?}")).collect();
                causes.push(Cause {
                    reason: "FieldValueNotSupported",
                    message: format!(
                        "Unsupported value: core.ResourceList{{{}}}: supported values: \"storage\"",
                        keys.join(", ")
                    ),
                    field: "spec.capacity".into(),
                });
            }
            Some(c) => {
                if let Some(q) = c.get("storage") {
                    super::resourcequota::validate_quantity("storage", q, "spec.capacity[storage]", &mut causes);
                }
            }
        }
        validate_common(spec, &mut causes);
        if let Some(p) = spec.get("persistentVolumeReclaimPolicy").filter(|p| !p.is_null()) {
            if !p.as_str().is_some_and(|p| RECLAIM_POLICIES.contains(&p)) {
                causes.push(Cause::not_supported("spec.persistentVolumeReclaimPolicy", p, RECLAIM_POLICIES));
            }
        }
        let sources: Vec<&str> =
            VOLUME_SOURCES.iter().copied().filter(|s| spec.get(*s).is_some_and(Value::is_object)).collect();
        match sources.as_slice() {
            [] => causes.push(Cause::required("spec", "must specify a volume type")),
            [_] => {}
            [_, rest @ ..] => {
                for s in rest {
                    causes.push(Cause::forbidden(format!("spec.{s}"), "may not specify more than 1 volume type"));
                }
            }
        }
        if let Some(hp) = spec.get("hostPath").filter(|h| h.is_object()) {
            if str_at(hp, "/path").is_empty() {
                causes.push(Cause::required("spec.hostPath.path", ""));
            }
            if let Some(t) = hp.get("type").filter(|t| !t.is_null()) {
                if !t.as_str().is_some_and(|t| HOST_PATH_TYPES.contains(&t)) {
                    causes.push(Cause::not_supported("spec.hostPath.type", t, HOST_PATH_TYPES));
                }
            }
        }
        if spec.get("local").is_some_and(Value::is_object) && !spec.get("nodeAffinity").is_some_and(Value::is_object) {
            causes.push(Cause::required("spec.nodeAffinity", "Local volume requires node affinity"));
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        let source = |o: &Value| -> Map<String, Value> {
            VOLUME_SOURCES
                .iter()
                .filter_map(|s| o.pointer(&format!("/spec/{s}")).map(|v| (s.to_string(), v.clone())))
                .collect()
        };
        if source(new) != source(old) {
            causes.push(Cause::forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            ));
        }
        let mode = |o: &Value| o.pointer("/spec/volumeMode").cloned().unwrap_or(Value::Null);
        if mode(new) != mode(old) {
            // Upstream's path for this rule is "volumeMode".
            causes.push(Cause::immutable("volumeMode", &mode(new)));
        }
        let affinity = |o: &Value| o.pointer("/spec/nodeAffinity").cloned().filter(|a| !a.is_null());
        if affinity(old).is_some() && affinity(new) != affinity(old) {
            causes.push(Cause::immutable("spec.nodeAffinity", &affinity(new).unwrap_or(Value::Null)));
        }
        causes
    }

    fn field_labels(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("name", generic_server::meta::name(obj).to_string())]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        &["name"]
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"),
            TableColumn::new("Access Modes", "string", "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"),
            TableColumn::new("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"),
            TableColumn::new("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"),
            TableColumn::new("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"),
            TableColumn::new("StorageClass", "string", "storageClassName is the name of StorageClass to which this persistent volume belongs. Empty value means that this volume does not belong to any StorageClass."),
            TableColumn::new("VolumeAttributesClass", "string", "Name of VolumeAttributesClass to which this persistent volume belongs. Empty value is not allowed. When this field is not set, it indicates that this volume does not belong to any VolumeAttributesClass. This field is mutable and can be changed by the CSI driver after a volume has been updated successfully to a new class. For an unbound PersistentVolume, the volumeAttributesClassName will be matched with unbound PersistentVolumeClaims during the binding process."),
            TableColumn::new("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
            TableColumn::age_column(),
            TableColumn::new("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.").wide(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let claim = obj
            .pointer("/spec/claimRef")
            .filter(|c| c.is_object())
            .map(|c| format!("{}/{}", str_at(c, "/namespace"), str_at(c, "/name")))
            .unwrap_or_default();
        let capacity = obj.pointer("/spec/capacity/storage").and_then(Value::as_str).unwrap_or("0");
        vec![
            json!(generic_server::meta::name(obj)),
            json!(capacity),
            json!(access_modes_cell(arr_at(obj, "/spec/accessModes"))),
            json!(str_at(obj, "/spec/persistentVolumeReclaimPolicy")),
            json!(phase_cell(obj)),
            json!(claim),
            json!(class_cell(obj)),
            json!(unset_or(obj, "/spec/volumeAttributesClassName")),
            json!(str_at(obj, "/status/reason")),
            age(obj),
            json!(unset_or(obj, "/spec/volumeMode")),
        ]
    }
}

pub struct PersistentVolumeClaimStrategy;

impl Strategy for PersistentVolumeClaimStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        fresh_status(obj, json!({"phase": "Pending"}));
    }

    fn default(&self, obj: &mut Value) {
        default_field(child(obj, "spec"), "volumeMode", json!("Filesystem"));
        default_field(child(obj, "status"), "phase", json!("Pending"));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        validate_access_modes(spec, "at least 1 access mode is required", &mut causes);
        if let Some(sel) = spec.get("selector").filter(|s| s.is_object()) {
            validate_label_selector(sel, "spec.selector", &mut causes);
        }
        match spec.pointer("/resources/requests/storage") {
            None => causes.push(Cause::required("spec.resources[storage]", "")),
            Some(q) => {
                if q.as_str().and_then(parse_quantity).is_some_and(|n| n <= 0.0) {
                    causes.push(Cause::invalid("spec.resources[storage]", q, "must be greater than zero"));
                }
            }
        }
        validate_common(spec, &mut causes);
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        // What may change: volumeName once (binding), the storage request of a
        // bound claim (expansion), and the volume attributes class.
        let comparable = |o: &Value, volume_name: &Value| {
            let mut spec = o.get("spec").cloned().unwrap_or(json!({}));
            if let Some(m) = spec.as_object_mut() {
                m.remove("volumeAttributesClassName");
                if !volume_name.is_null() {
                    m.insert("volumeName".into(), volume_name.clone());
                }
            }
            if let Some(Value::Object(r)) = spec.pointer_mut("/resources/requests") {
                r.remove("storage");
            }
            spec
        };
        let new_name = new.pointer("/spec/volumeName").cloned().unwrap_or(Value::Null);
        let old_name = if str_at(old, "/spec/volumeName").is_empty() { new_name } else { Value::Null };
        let bound = str_at(new, "/status/phase") == "Bound";
        let storage_changed =
            new.pointer("/spec/resources/requests/storage") != old.pointer("/spec/resources/requests/storage");
        if comparable(new, &Value::Null) != comparable(old, &old_name) || (storage_changed && !bound) {
            causes.push(Cause::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        causes
    }

    fn field_labels(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("name", generic_server::meta::name(obj).to_string())]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        &["name"]
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
            TableColumn::new("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
            TableColumn::new("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
            TableColumn::new("Access Modes", "string", "accessModes contains the desired access modes the volume should have. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
            TableColumn::new("StorageClass", "string", "storageClassName is the name of the StorageClass required by the claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#class-1"),
            TableColumn::new("VolumeAttributesClass", "string", "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim. If specified, the CSI driver will create or update the volume with the attributes defined in the corresponding VolumeAttributesClass. This has a different purpose than storageClassName, it can be changed after the claim is created. An empty string or nil value indicates that no VolumeAttributesClass will be applied to the claim. If the claim enters an Infeasible error state, this field can be reset to its previous value (including nil) to cancel the modification. If the resource referred to by volumeAttributesClass does not exist, this PersistentVolumeClaim will be set to a Pending state, as reflected by the modifyVolumeStatus field, until such as a resource exists. More info: https://kubernetes.io/docs/concepts/storage/volume-attributes-classes/"),
            TableColumn::age_column(),
            TableColumn::new("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.").wide(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let volume = str_at(obj, "/spec/volumeName");
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            let capacity = obj.pointer("/status/capacity/storage").and_then(Value::as_str).unwrap_or("0");
            (capacity.to_string(), access_modes_cell(arr_at(obj, "/status/accessModes")))
        };
        vec![
            json!(generic_server::meta::name(obj)),
            json!(phase_cell(obj)),
            json!(volume),
            json!(capacity),
            json!(modes),
            json!(class_cell(obj)),
            json!(unset_or(obj, "/spec/volumeAttributesClassName")),
            age(obj),
            json!(unset_or(obj, "/spec/volumeMode")),
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
    fn volumes() {
        let s = PersistentVolumeStrategy;
        assert_eq!(
            messages(s.validate(&json!({"spec": {}}))),
            [
                "spec.accessModes: Required value",
                "spec.capacity: Required value",
                "spec: Required value: must specify a volume type"
            ]
        );
        let mut pv = json!({"spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"}}});
        s.default(&mut pv);
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["hostPath"]["type"], "");
        assert!(s.validate(&pv).is_empty());
        assert_eq!(access_modes_cell(arr_at(&pv, "/spec/accessModes")), "RWO,ROX");
        let mut moved = pv.clone();
        moved["spec"]["hostPath"]["path"] = json!("/e");
        assert_eq!(
            messages(s.validate_update(&moved, &pv)),
            ["spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"]
        );
    }

    #[test]
    fn claims() {
        let s = PersistentVolumeClaimStrategy;
        assert_eq!(
            messages(s.validate(&json!({"spec": {}}))),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value"
            ]
        );
        let old = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}});
        let mut bound = old.clone();
        bound["spec"]["volumeName"] = json!("pv1");
        assert!(s.validate_update(&bound, &old).is_empty());
        let mut grown = old.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(messages(s.validate_update(&grown, &old)).len(), 1);
        grown["status"]["phase"] = json!("Bound");
        assert!(s.validate_update(&grown, &old).is_empty());
    }
}
