//! The CustomResourceDefinition resource: its Strategy (defaults, upstream's
//! spec validation including the structural schema rules) and a parsed view
//! of a CRD the server and controller work from.

use std::borrow::Cow;

use serde_json::{json, Value};

use generic_server::meta::{self, str_at};
use generic_server::registry::{Registration, ResourceInfo, ScalePaths, Strategy, Subresource, TableColumn};
use generic_server::status::Cause;

use crate::jsonpath::JsonPath;
use crate::schema;

pub const GROUP: &str = "apiextensions.k8s.io";
pub const FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

pub fn registration() -> Registration {
    Registration::of::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(
        CrdStrategy,
    )
    .short_names(&["crd", "crds"])
    .categories(&["api-extensions"])
    .key_root("/registry/apiextensions.k8s.io/customresourcedefinitions")
    .status()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    pub json_path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub name: String,
    pub served: bool,
    pub storage: bool,
    pub schema: Value,
    pub status: bool,
    pub scale: Option<ScalePaths>,
    pub columns: Vec<Column>,
    pub selectable_fields: Vec<String>,
    pub deprecated: bool,
    pub deprecation_warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Conversion {
    None,
    /// The webhook's clientConfig as written (compiled by the Converter).
    Webhook {
        client_config: Value,
        review_versions: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Names {
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

impl Names {
    pub fn from_value(v: &Value) -> Names {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let list = |k: &str| -> Vec<String> {
            v.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default()
        };
        let kind = s("kind");
        let list_kind = match s("listKind") {
            l if l.is_empty() && !kind.is_empty() => format!("{kind}List"),
            l => l,
        };
        let singular = match s("singular") {
            l if l.is_empty() => kind.to_lowercase(),
            l => l,
        };
        Names {
            plural: s("plural"),
            singular,
            kind,
            list_kind,
            short_names: list("shortNames"),
            categories: list("categories"),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut v =
            json!({"plural": self.plural, "singular": self.singular, "kind": self.kind, "listKind": self.list_kind});
        if !self.short_names.is_empty() {
            v["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            v["categories"] = json!(self.categories);
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Crd {
    pub name: String,
    pub uid: String,
    pub group: String,
    pub names: Names,
    pub namespaced: bool,
    pub versions: Vec<Version>,
    pub conversion: Conversion,
}

impl Crd {
    /// The parsed view of a stored (so already validated) CRD.
    pub fn parse(obj: &Value) -> Crd {
        let spec = obj.get("spec").cloned().unwrap_or_default();
        let names = Names::from_value(spec.get("names").unwrap_or(&Value::Null));
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(parse_version).collect())
            .unwrap_or_default();
        let conversion = match str_at(&spec, "/conversion/strategy") {
            "Webhook" => {
                let client_config = spec.pointer("/conversion/webhook/clientConfig").cloned().unwrap_or_default();
                let review_versions = spec
                    .pointer("/conversion/webhook/conversionReviewVersions")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default();
                Conversion::Webhook { client_config, review_versions }
            }
            _ => Conversion::None,
        };
        Crd {
            name: meta::name(obj).to_string(),
            uid: meta::uid(obj).to_string(),
            group: str_at(&spec, "/group").to_string(),
            names,
            namespaced: str_at(&spec, "/scope") != "Cluster",
            versions,
            conversion,
        }
    }

    pub fn storage_version(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.storage)
    }

    pub fn key_root(&self) -> String {
        format!("/registry/{}/{}", self.group, self.names.plural)
    }

    /// The ResourceInfo of one version served under `names`.
    pub fn info(&self, v: &Version, names: &Names) -> ResourceInfo {
        let mut subresources = Vec::new();
        if v.status {
            subresources.push(Subresource::Status);
        }
        if let Some(s) = &v.scale {
            subresources.push(Subresource::Scale(s.clone()));
        }
        ResourceInfo {
            group: self.group.clone(),
            version: v.name.clone(),
            kind: names.kind.clone(),
            plural: names.plural.clone(),
            singular: names.singular.clone(),
            namespaced: self.namespaced,
            short_names: names.short_names.clone(),
            categories: names.categories.clone(),
            key_root: format!("/registry/{}/{}", self.group, names.plural),
            subresources,
            verbs: generic_server::discovery::VERBS,
            storage_version_hash: generic_server::discovery::storage_version_hash(
                &self.group,
                self.storage_version().map_or("", |v| v.name.as_str()),
                &names.kind,
            ),
        }
    }
}

fn parse_version(v: &Value) -> Version {
    let schema = v
        .pointer("/schema/openAPIV3Schema")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let scale = v.pointer("/subresources/scale").map(|s| ScalePaths {
        spec_replicas: str_at(s, "/specReplicasPath").to_string(),
        status_replicas: str_at(s, "/statusReplicasPath").to_string(),
        label_selector: s.get("labelSelectorPath").and_then(Value::as_str).map(str::to_string),
    });
    let columns = v
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| Column {
                    name: str_at(c, "/name").to_string(),
                    type_: str_at(c, "/type").to_string(),
                    format: str_at(c, "/format").to_string(),
                    description: str_at(c, "/description").to_string(),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0) as i32,
                    json_path: str_at(c, "/jsonPath").to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let selectable_fields = v
        .get("selectableFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|f| str_at(f, "/jsonPath").trim_start_matches('.').to_string()).collect())
        .unwrap_or_default();
    Version {
        name: str_at(v, "/name").to_string(),
        served: v.get("served").and_then(Value::as_bool).unwrap_or(false),
        storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
        schema,
        status: v.pointer("/subresources/status").is_some(),
        scale,
        columns,
        selectable_fields,
        deprecated: v.get("deprecated").and_then(Value::as_bool).unwrap_or(false),
        deprecation_warning: v.get("deprecationWarning").and_then(Value::as_str).map(str::to_string),
    }
}

/// A condition of a CRD's status, or None.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// Sets a condition, keeping lastTransitionTime when the status does not change.
pub fn set_condition(obj: &mut Value, type_: &str, status: &str, reason: &str, message: &str) {
    let now = meta::now_rfc3339();
    let existing = condition(obj, type_).cloned();
    let time = match &existing {
        Some(c) if c.get("status").and_then(Value::as_str) == Some(status) => {
            c.get("lastTransitionTime").cloned().unwrap_or_else(|| json!(now))
        }
        _ => json!(now),
    };
    let cond =
        json!({"type": type_, "status": status, "lastTransitionTime": time, "reason": reason, "message": message});
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let conds = obj["status"].get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out: Vec<Value> =
        conds.into_iter().filter(|c| c.get("type").and_then(Value::as_str) != Some(type_)).collect();
    out.push(cond);
    out.sort_by_key(|c| match c.get("type").and_then(Value::as_str) {
        Some("NamesAccepted") => 0,
        Some("Established") => 1,
        _ => 2,
    });
    obj["status"]["conditions"] = Value::Array(out);
}

pub struct CrdStrategy;

impl Strategy for CrdStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, object: &mut Value) {
        if let Some(m) = object.as_object_mut() {
            m.insert(
                "status".into(),
                json!({"conditions": [], "acceptedNames": {"plural": "", "kind": ""}, "storedVersions": []}),
            );
        }
    }

    fn default(&self, object: &mut Value) {
        let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else { return };
        if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
            let kind = names.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
            if !kind.is_empty() {
                names.entry("listKind").or_insert_with(|| json!(format!("{kind}List")));
                names.entry("singular").or_insert_with(|| json!(kind.to_lowercase()));
            }
        }
        let conv = spec.entry("conversion").or_insert_with(|| json!({"strategy": "None"}));
        if let Some(c) = conv.as_object_mut() {
            c.entry("strategy").or_insert_with(|| json!("None"));
        }
        // A printer column's priority is omitempty upstream: 0 is not written,
        // so a column without one reads back as it was applied.
    }

    fn validate(&self, object: &Value) -> Vec<Cause> {
        validate_crd(object)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = validate_crd(new);
        let group = str_at(new, "/spec/group");
        if group != str_at(old, "/spec/group") {
            causes.push(Cause::immutable("spec.group", &json!(group)));
        }
        let established =
            condition(old, "Established").and_then(|c| c.get("status")).and_then(Value::as_str) == Some("True");
        let scope = str_at(new, "/spec/scope");
        if established && scope != str_at(old, "/spec/scope") {
            causes.push(Cause::immutable("spec.scope", &json!(scope)));
        }
        causes
    }

    fn pending_finalizers(&self, object: &Value) -> bool {
        // The first delete always waits: prepare_for_delete adds the cleanup
        // finalizer, which the controller removes once the CRs are gone.
        meta::meta_str(object, "deletionTimestamp").is_empty() || !meta::finalizers(object).is_empty()
    }

    fn prepare_for_delete(&self, object: &mut Value) {
        let mut finalizers = meta::finalizers(object);
        if !finalizers.iter().any(|f| f == FINALIZER) {
            finalizers.push(FINALIZER.into());
        }
        meta::set_meta(object, "finalizers", json!(finalizers));
        set_condition(
            object,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn {
                name: Cow::Borrowed("Created At"),
                type_: Cow::Borrowed("date"),
                format: Cow::Borrowed(""),
                description: Cow::Borrowed(
                    "CreationTimestamp is a timestamp representing the server time when this object was created.",
                ),
                priority: 0,
            },
        ]
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        vec![json!(meta::name(object)), json!(meta::meta_str(object, "creationTimestamp"))]
    }
}

fn is_dns1035(s: &str) -> bool {
    meta::is_dns1035_label(s).is_none()
}

/// Upstream's ValidateCustomResourceDefinition, in the parts clients meet.
pub fn validate_crd(obj: &Value) -> Vec<Cause> {
    let mut c = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    if !spec.is_object() {
        c.push(Cause::required("spec", ""));
        return c;
    }
    let group = str_at(&spec, "/group");
    let plural = str_at(&spec, "/names/plural");
    let name = meta::name(obj);
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        c.push(Cause::invalid("metadata.name", &json!(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    if group.is_empty() {
        c.push(Cause::required("spec.group", ""));
    } else if let Some(p) = meta::is_dns1123_subdomain(group) {
        c.push(Cause::invalid("spec.group", &json!(group), &p));
    } else if !group.contains('.') {
        c.push(Cause::invalid("spec.group", &json!(group), "should be a domain with at least one dot"));
    }
    match str_at(&spec, "/scope") {
        "Cluster" | "Namespaced" => {}
        "" => c.push(Cause::required("spec.scope", "")),
        other => c.push(Cause::not_supported("spec.scope", &json!(other), &["Cluster", "Namespaced"])),
    }
    validate_names(spec.get("names").unwrap_or(&Value::Null), "spec.names", &mut c);
    let versions = spec.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
    if versions.is_empty() {
        c.push(Cause::required("spec.versions", "must have exactly one version marked as storage version"));
    }
    let storage_count = versions.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true)).count();
    if !versions.is_empty() && storage_count != 1 {
        c.push(Cause::invalid(
            "spec.versions",
            &json!(versions.iter().map(|v| str_at(v, "/name")).collect::<Vec<_>>().join(",")),
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions.is_empty() && !versions.iter().any(|v| v.get("served").and_then(Value::as_bool) == Some(true)) {
        c.push(Cause::invalid("spec.versions", &json!(""), "must have at least one version marked as served"));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, v) in versions.iter().enumerate() {
        let p = format!("spec.versions[{i}]");
        let vname = str_at(v, "/name");
        if vname.is_empty() {
            c.push(Cause::required(format!("{p}.name"), ""));
        } else if !is_dns1035(vname) {
            c.push(Cause::invalid(format!("{p}.name"), &json!(vname), "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"));
        } else if !seen.insert(vname.to_string()) {
            c.push(Cause::duplicate(format!("{p}.name"), &json!(vname)));
        }
        for f in ["served", "storage"] {
            if !v.get(f).is_some_and(Value::is_boolean) {
                c.push(Cause::required(format!("{p}.{f}"), ""));
            }
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => c.push(Cause::required(format!("{p}.schema.openAPIV3Schema"), "schemas are required")),
            Some(s) => {
                let sp = format!("{p}.schema.openAPIV3Schema");
                validate_structural(s, &sp, true, false, &mut c);
                let before = c.len();
                crate::cel::compile(s, &sp, &mut c);
                if c.len() == before {
                    validate_defaults(s, &sp, &mut c);
                }
            }
        }
        if let Some(scale) = v.pointer("/subresources/scale") {
            let sp = format!("{p}.subresources.scale");
            for (f, prefix) in [("specReplicasPath", ".spec."), ("statusReplicasPath", ".status.")] {
                let path = str_at(scale, &format!("/{f}"));
                if path.is_empty() {
                    c.push(Cause::required(format!("{sp}.{f}"), ""));
                } else if !path.starts_with(prefix) || JsonPath::parse(path).map(|j| !j.is_simple()).unwrap_or(true) {
                    c.push(Cause::invalid(
                        format!("{sp}.{f}"),
                        &json!(path),
                        &format!("should be a json path under {}", prefix.trim_end_matches('.')),
                    ));
                }
            }
            if let Some(path) = scale.get("labelSelectorPath").and_then(Value::as_str) {
                if !(path.starts_with(".spec.") || path.starts_with(".status.")) || JsonPath::parse(path).is_err() {
                    c.push(Cause::invalid(
                        format!("{sp}.labelSelectorPath"),
                        &json!(path),
                        "should be a json path under either .spec or .status",
                    ));
                }
            }
        }
        if let Some(cols) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
            for (j, col) in cols.iter().enumerate() {
                let cp = format!("{p}.additionalPrinterColumns[{j}]");
                if str_at(col, "/name").is_empty() {
                    c.push(Cause::required(format!("{cp}.name"), ""));
                }
                let t = str_at(col, "/type");
                if !["integer", "number", "string", "boolean", "date"].contains(&t) {
                    c.push(Cause::not_supported(
                        format!("{cp}.type"),
                        &json!(t),
                        &["integer", "number", "string", "boolean", "date"],
                    ));
                }
                let jp = str_at(col, "/jsonPath");
                if jp.is_empty() {
                    c.push(Cause::required(format!("{cp}.JSONPath"), ""));
                } else if let Err(e) = JsonPath::parse(jp) {
                    c.push(Cause::invalid(
                        format!("{cp}.JSONPath"),
                        &json!(jp),
                        &format!("must be a simple json path: {e}"),
                    ));
                }
            }
        }
        if let Some(fields) = v.get("selectableFields").and_then(Value::as_array) {
            if fields.len() > 8 {
                c.push(Cause {
                    reason: "FieldValueTooMany",
                    message: format!("Too many: {}: must have at most 8 items", fields.len()),
                    field: format!("{p}.selectableFields"),
                });
            }
            for (j, f) in fields.iter().enumerate() {
                let jp = str_at(f, "/jsonPath");
                let fp = format!("{p}.selectableFields[{j}].jsonPath");
                match JsonPath::parse(jp) {
                    Ok(j) if j.is_simple() && !jp.starts_with(".metadata") => {
                        let field_schema = jp
                            .trim_start_matches('.')
                            .split('.')
                            .try_fold(v.pointer("/schema/openAPIV3Schema"), |s, k| Some(s?.get("properties")?.get(k)));
                        match field_schema.flatten() {
                            Some(s) if ["string", "integer", "boolean"].contains(&s.get("type").and_then(Value::as_str).unwrap_or_default()) => {}
                            Some(_) => c.push(Cause::invalid(fp, &json!(jp), "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.")),
                            None => c.push(Cause::invalid(fp, &json!(jp), "is an invalid path: does not refer to a valid field")),
                        }
                    }
                    _ => c.push(Cause::invalid(fp, &json!(jp), "must be a simple json path under .spec or .status")),
                }
            }
        }
    }
    match str_at(&spec, "/conversion/strategy") {
        "" | "None" => {
            if spec.pointer("/conversion/webhook").is_some() {
                c.push(Cause::forbidden(
                    "spec.conversion.webhook",
                    "should not be set when strategy is not set to Webhook",
                ));
            }
        }
        "Webhook" => {
            let cc = spec.pointer("/conversion/webhook/clientConfig");
            match cc {
                None => c.push(Cause::required(
                    "spec.conversion.webhook.clientConfig",
                    "required when strategy is set to Webhook",
                )),
                Some(cc) => {
                    let has_url = cc.get("url").is_some();
                    let has_svc = cc.get("service").is_some();
                    if has_url == has_svc {
                        c.push(Cause::required(
                            "spec.conversion.webhook.clientConfig",
                            "exactly one of url or service is required",
                        ));
                    }
                    if let Some(u) = cc.get("url").and_then(Value::as_str) {
                        if !u.starts_with("https://") {
                            c.push(Cause::invalid(
                                "spec.conversion.webhook.clientConfig.url",
                                &json!(u),
                                "'https' is the only allowed URL scheme",
                            ));
                        }
                    }
                    if has_svc {
                        for f in ["name", "namespace"] {
                            if str_at(cc, &format!("/service/{f}")).is_empty() {
                                c.push(Cause::required(
                                    format!("spec.conversion.webhook.clientConfig.service.{f}"),
                                    "",
                                ));
                            }
                        }
                    }
                }
            }
            let rv = spec
                .pointer("/conversion/webhook/conversionReviewVersions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !rv.iter().any(|v| v.as_str() == Some("v1") || v.as_str() == Some("v1beta1")) {
                c.push(Cause::invalid(
                    "spec.conversion.webhook.conversionReviewVersions",
                    &json!(rv.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")),
                    "must include at least one of v1, v1beta1",
                ));
            }
        }
        other => c.push(Cause::not_supported("spec.conversion.strategy", &json!(other), &["None", "Webhook"])),
    }
    c
}

fn validate_names(names: &Value, p: &str, c: &mut Vec<Cause>) {
    let plural = str_at(names, "/plural");
    let kind = str_at(names, "/kind");
    let singular = str_at(names, "/singular");
    let list_kind = str_at(names, "/listKind");
    if plural.is_empty() {
        c.push(Cause::required(format!("{p}.plural"), ""));
    } else if !is_dns1035(plural) {
        c.push(Cause::invalid(format!("{p}.plural"), &json!(plural), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
    }
    if !singular.is_empty() && !is_dns1035(singular) {
        c.push(Cause::invalid(format!("{p}.singular"), &json!(singular), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
    }
    if kind.is_empty() {
        c.push(Cause::required(format!("{p}.kind"), ""));
    } else if !kind.chars().all(|ch| ch.is_ascii_alphanumeric())
        || !kind.starts_with(|ch: char| ch.is_ascii_alphabetic())
    {
        c.push(Cause::invalid(
            format!("{p}.kind"),
            &json!(kind),
            "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
        ));
    }
    if !list_kind.is_empty() && list_kind == kind {
        c.push(Cause::invalid(format!("{p}.listKind"), &json!(list_kind), "kind and listKind may not be the same"));
    }
    for (i, s) in names.get("shortNames").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let s = s.as_str().unwrap_or_default();
        if !is_dns1035(s) {
            c.push(Cause::invalid(format!("{p}.shortNames[{i}]"), &json!(s), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
        }
    }
}

const FORBIDDEN_KEYWORDS: &[(&str, &str)] = &[
    ("$ref", "$ref is not supported"),
    ("$schema", "$schema is not supported"),
    ("id", "id is not supported"),
    ("definitions", "definitions are not supported"),
    ("dependencies", "dependencies are not supported"),
    ("patternProperties", "patternProperties is not supported"),
    ("additionalItems", "additionalItems cannot be set to false"),
];

/// Upstream's structural schema rules and forbidden constructs.
fn validate_structural(s: &Value, p: &str, root: bool, in_value_validation: bool, c: &mut Vec<Cause>) {
    let Value::Object(m) = s else {
        c.push(Cause::invalid(p, &json!(type_name_of(s)), "must be an object"));
        return;
    };
    for (k, why) in FORBIDDEN_KEYWORDS {
        if m.contains_key(*k) {
            c.push(Cause::forbidden(format!("{p}.{k}"), why));
        }
    }
    if m.get("uniqueItems") == Some(&Value::Bool(true)) {
        c.push(Cause::forbidden(
            format!("{p}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if m.get("additionalProperties") == Some(&Value::Bool(false)) {
        c.push(Cause::forbidden(format!("{p}.additionalProperties"), "additionalProperties cannot be set to false"));
    }
    let t = m.get("type").and_then(Value::as_str).unwrap_or_default();
    if let Some(ty) = m.get("type") {
        if !["object", "array", "string", "integer", "number", "boolean"].contains(&t) {
            c.push(Cause::not_supported(
                format!("{p}.type"),
                ty,
                &["array", "boolean", "integer", "number", "object", "string"],
            ));
        }
    }
    let int_or_string = schema::is_int_or_string(s);
    let preserve = m.get("x-kubernetes-preserve-unknown-fields");
    if let Some(pv) = preserve {
        if pv != &Value::Bool(true) {
            c.push(Cause::invalid(
                format!("{p}.x-kubernetes-preserve-unknown-fields"),
                pv,
                "must be true or undefined",
            ));
        }
    }
    if in_value_validation {
        for k in [
            "type",
            "nullable",
            "default",
            "description",
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-embedded-resource",
            "x-kubernetes-int-or-string",
        ] {
            if m.contains_key(k) && !(k == "type" && int_or_string) {
                c.push(Cause::forbidden(format!("{p}.{k}"), "must be empty to be structural"));
            }
        }
    } else {
        if t.is_empty() && !int_or_string && preserve != Some(&Value::Bool(true)) {
            c.push(Cause::required(format!("{p}.type"), "must not be empty for specified object fields"));
        }
        if root && !t.is_empty() && t != "object" {
            c.push(Cause::invalid(format!("{p}.type"), &json!(t), "must be object at the root"));
        }
        if int_or_string && !t.is_empty() {
            c.push(Cause::invalid(
                format!("{p}.type"),
                &json!(t),
                "must be empty if x-kubernetes-int-or-string is true",
            ));
        }
        if schema::is_embedded(s) {
            if t != "object" {
                c.push(Cause::invalid(
                    format!("{p}.type"),
                    &json!(t),
                    "must be object if x-kubernetes-embedded-resource is true",
                ));
            }
            if m.get("properties").is_none() && preserve != Some(&Value::Bool(true)) {
                c.push(Cause::required(format!("{p}.properties"), "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"));
            }
        }
    }
    if m.get("properties").is_some() && m.get("additionalProperties").is_some_and(Value::is_object) {
        c.push(Cause::forbidden(
            format!("{p}.additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if let Some(props) = m.get("properties") {
        match props.as_object() {
            Some(props) => {
                for (k, child) in props {
                    let cp = format!("{p}.properties[{k}]");
                    if root && k == "metadata" && !in_value_validation {
                        if !metadata_schema_ok(child) {
                            c.push(Cause::forbidden(cp.clone(), "must not specify anything other than name and generateName, but metadata is implicitly specified"));
                        }
                        continue;
                    }
                    validate_structural(child, &cp, false, in_value_validation, c);
                }
            }
            None => c.push(Cause::invalid(format!("{p}.properties"), props, "must be an object")),
        }
    }
    if let Some(ap) = m.get("additionalProperties").filter(|a| a.is_object()) {
        validate_structural(ap, &format!("{p}.additionalProperties"), false, in_value_validation, c);
    }
    match m.get("items") {
        Some(Value::Array(_)) => {
            c.push(Cause::forbidden(format!("{p}.items"), "items must be a schema object and not an array"))
        }
        Some(items) => validate_structural(items, &format!("{p}.items"), false, in_value_validation, c),
        None if t == "array" && !in_value_validation => {
            c.push(Cause::required(format!("{p}.items"), "must be specified"))
        }
        None => {}
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = m.get(k).and_then(Value::as_array) {
            for (i, child) in list.iter().enumerate() {
                // Under x-kubernetes-int-or-string, anyOf/allOf may name the
                // integer and string types (upstream's IntOrString exception).
                let mut child = child.clone();
                if int_or_string && matches!(child.get("type").and_then(Value::as_str), Some("integer" | "string")) {
                    if let Some(cm) = child.as_object_mut() {
                        cm.remove("type");
                    }
                }
                validate_structural(&child, &format!("{p}.{k}[{i}]"), false, true, c);
            }
        }
    }
    if let Some(not) = m.get("not") {
        validate_structural(not, &format!("{p}.not"), false, true, c);
    }
    if let Some(lt) = m.get("x-kubernetes-list-type") {
        let lts = lt.as_str().unwrap_or_default();
        if !["atomic", "set", "map"].contains(&lts) {
            c.push(Cause::not_supported(format!("{p}.x-kubernetes-list-type"), lt, &["atomic", "set", "map"]));
        }
        if t != "array" {
            c.push(Cause::invalid(
                format!("{p}.type"),
                &json!(t),
                "must be array if x-kubernetes-list-type is specified",
            ));
        }
        if lts == "map" && m.get("x-kubernetes-list-map-keys").and_then(Value::as_array).is_none_or(Vec::is_empty) {
            c.push(Cause::required(
                format!("{p}.x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
    }
    if let Some(pattern) = m.get("pattern").and_then(Value::as_str) {
        if regex::Regex::new(pattern).is_err() {
            c.push(Cause::invalid(format!("{p}.pattern"), &json!(pattern), "must be a valid regular expression"));
        }
    }
}

fn type_name_of(v: &Value) -> &'static str {
    schema::type_name(v)
}

fn metadata_schema_ok(s: &Value) -> bool {
    let Some(m) = s.as_object() else { return false };
    for (k, v) in m {
        match k.as_str() {
            "type" => {
                if v.as_str() != Some("object") {
                    return false;
                }
            }
            "description" => {}
            "properties" => {
                let Some(props) = v.as_object() else { return false };
                for (pk, ps) in props {
                    if pk != "name" && pk != "generateName" {
                        return false;
                    }
                    if ps.get("type").and_then(Value::as_str) != Some("string") {
                        return false;
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

/// Every `default` must itself be valid (and survive pruning unchanged).
fn validate_defaults(s: &Value, p: &str, c: &mut Vec<Cause>) {
    let Value::Object(m) = s else { return };
    if let Some(d) = m.get("default") {
        let mut pruned_default = d.clone();
        let mut pruned = Vec::new();
        schema::prune(&mut pruned_default, s, false, "", &mut pruned);
        if !pruned.is_empty() {
            c.push(Cause::invalid(
                format!("{p}.default"),
                d,
                &format!("must not have unknown fields: {}", pruned.join(", ")),
            ));
        } else {
            match schema::SchemaValidator::new(s) {
                Ok(v) => {
                    for cause in v.validate(d) {
                        let f = if cause.field.is_empty() {
                            format!("{p}.default")
                        } else {
                            format!("{p}.default.{}", cause.field)
                        };
                        c.push(Cause { field: f, ..cause });
                    }
                }
                Err(e) => c.push(Cause::invalid(p.to_string(), &json!(""), &e)),
            }
        }
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, child) in props {
            validate_defaults(child, &format!("{p}.properties[{k}]"), c);
        }
    }
    for k in ["additionalProperties", "items"] {
        if let Some(child) = m.get(k).filter(|x| x.is_object()) {
            validate_defaults(child, &format!("{p}.{k}"), c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(schema: Value) -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]}})
    }

    fn msgs(v: &Value) -> Vec<String> {
        validate_crd(v).iter().map(Cause::full_message).collect()
    }

    #[test]
    fn valid_crd_passes() {
        let v = crd(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "replicas": {"type": "integer", "default": 1}, "port": {"x-kubernetes-int-or-string": true}}}}}));
        assert!(msgs(&v).is_empty(), "{:?}", msgs(&v));
    }

    #[test]
    fn structural_rules() {
        let m =
            msgs(&crd(json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}})));
        assert_eq!(m, vec!["spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"]);
        let m = msgs(&crd(
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
        ));
        assert!(
            m[0].contains(
                "properties[metadata]: Forbidden: must not specify anything other than name and generateName"
            ),
            "{m:?}"
        );
        let m = msgs(&crd(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": false})));
        assert!(m[0].contains("must be true or undefined"));
        let m = msgs(&crd(json!({"type": "object", "properties": {"a": {"type": "integer", "default": "x"}}})));
        assert!(m[0].contains("properties[a].default"), "{m:?}");
        let mut bad_name = crd(json!({"type": "object"}));
        bad_name["metadata"]["name"] = json!("foo.example.com");
        assert!(msgs(&bad_name)[0].starts_with("metadata.name: Invalid value"));
    }
}
