//! batch/v1 jobs (upstream pkg/registry/batch/job): upstream's defaults
//! (completions and parallelism 1, backoffLimit 6, NonIndexed, not
//! suspended, podReplacementPolicy), the selector upstream generates unless
//! manualSelector is set, validation of the job spec (shared with CronJob's
//! jobTemplate), the immutable selector, template, completions and
//! completionMode, the status subresource, the `status.successful` field
//! selector and the table.

use serde_json::{json, Map, Value};

use k8s_openapi::api::batch::v1::Job;

use generic_server::registry::table::human_duration;
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::label_selector::validate_label_selector;
use super::podspec::validate_pod_spec;
use super::workload::{
    at, container_cells, default_template, immutable, immutable_selector, int, non_negative, pointer, selects,
    template_matches,
};
use super::{age, arr_at, child, default_field, format_label_selector, invalid_raw, map_at, show, str_at};

pub struct JobStrategy;

pub fn registration() -> Registration {
    Registration::of::<Job>(JobStrategy).categories(&["all"]).status()
}

/// The label the generated selector matches: the job's uid.
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
/// The labels older clients look for, kept on the template as upstream does.
const LEGACY_CONTROLLER_UID: &str = "controller-uid";
const LEGACY_JOB_NAME: &str = "job-name";

const COMPLETION_MODES: &[&str] = &["NonIndexed", "Indexed"];
const REPLACEMENT_POLICIES: &[&str] = &["TerminatingOrFailed", "Failed"];

fn manual_selector(obj: &Value) -> bool {
    at(obj, "spec.manualSelector").and_then(Value::as_bool) == Some(true)
}

/// Upstream's generateSelector: the template gets the job's name and uid as
/// labels (user-set ones are kept, and refused by validation if wrong), the
/// selector matches the uid.
fn generate_selector(obj: &mut Value) {
    let name = generic_server::meta::name(obj).to_string();
    let uid = generic_server::meta::uid(obj).to_string();
    let template = child(child_value(obj, "spec"), "template");
    let meta = template.entry("metadata").or_insert_with(|| json!({}));
    let labels = child(meta, "labels");
    for (key, value) in
        [(CONTROLLER_UID, &uid), (JOB_NAME, &name), (LEGACY_CONTROLLER_UID, &uid), (LEGACY_JOB_NAME, &name)]
    {
        labels.entry(key).or_insert_with(|| json!(value));
    }
    let spec = child(obj, "spec");
    let selector = spec.entry("selector").or_insert_with(|| json!({}));
    let match_labels = child(selector, "matchLabels");
    match_labels.entry(CONTROLLER_UID).or_insert_with(|| json!(uid));
}

fn child_value<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    child(obj, key);
    match obj.get_mut(key) {
        Some(v) => v,
        None => unreachable!("child() inserted it"),
    }
}

/// validateJobSpec: what a Job's spec and a CronJob's jobTemplate.spec share
/// (at the dotted path `spec`): counts, completionMode, podReplacementPolicy,
/// the template's PodSpec and restartPolicy OnFailure or Never.
pub(crate) fn validate_job_spec(causes: &mut Vec<Cause>, obj: &Value, spec: &str) {
    let counts: Vec<String> =
        ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"]
            .iter()
            .map(|f| format!("{spec}.{f}"))
            .collect();
    let counts: Vec<&str> = counts.iter().map(String::as_str).collect();
    non_negative(causes, obj, &counts);
    let mode_path = format!("{spec}.completionMode");
    if let Some(mode) = at(obj, &mode_path) {
        if !mode.as_str().is_some_and(|m| COMPLETION_MODES.contains(&m)) {
            causes.push(Cause::not_supported(&mode_path, mode, COMPLETION_MODES));
        } else if mode == "Indexed" && at(obj, &format!("{spec}.completions")).is_none() {
            causes.push(Cause::required(format!("{spec}.completions"), "when completion mode is Indexed"));
        }
    }
    let policy_path = format!("{spec}.podReplacementPolicy");
    if let Some(p) = at(obj, &policy_path) {
        if !p.as_str().is_some_and(|m| REPLACEMENT_POLICIES.contains(&m)) {
            causes.push(Cause::not_supported(&policy_path, p, REPLACEMENT_POLICIES));
        }
    }
    let pod_spec_path = format!("{spec}.template.spec");
    let pod_spec = at(obj, &pod_spec_path).unwrap_or(&Value::Null);
    causes.extend(validate_pod_spec(pod_spec, &pod_spec_path));
    let rp = pod_spec.get("restartPolicy").cloned().unwrap_or(json!(""));
    if !matches!(rp.as_str(), Some("OnFailure" | "Never")) {
        causes.push(Cause::not_supported(format!("{pod_spec_path}.restartPolicy"), &rp, &["OnFailure", "Never"]));
    }
}

/// The Job defaults a Job object gets (SetDefaults_Job, without the labels).
fn default_job_spec(spec: &mut Map<String, Value>) {
    if spec.get("completions").is_none_or(Value::is_null) && spec.get("parallelism").is_none_or(Value::is_null) {
        spec.insert("completions".into(), json!(1));
    }
    default_field(spec, "parallelism", json!(1));
    default_field(spec, "backoffLimit", json!(6));
    default_field(spec, "completionMode", json!("NonIndexed"));
    default_field(spec, "suspend", json!(false));
    let failure_policy = spec.get("podFailurePolicy").is_some_and(|p| !p.is_null());
    default_field(spec, "podReplacementPolicy", json!(if failure_policy { "Failed" } else { "TerminatingOrFailed" }));
}

/// The Status cell, in upstream's order of precedence.
fn status_cell(o: &Value) -> &'static str {
    let has = |t: &str| {
        arr_at(o, "/status/conditions").iter().any(|c| str_at(c, "/type") == t && str_at(c, "/status") == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if !generic_server::meta::meta_str(o, "deletionTimestamp").is_empty() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn duration_cell(o: &Value) -> String {
    let parse = |p: &str| chrono::DateTime::parse_from_rfc3339(str_at(o, p)).ok();
    match (parse("/status/startTime"), parse("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(chrono::Utc::now().signed_duration_since(start).num_seconds()),
        (Some(start), Some(end)) => human_duration(end.signed_duration_since(start).num_seconds()),
    }
}

impl Strategy for JobStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, object: &mut Value) {
        if !manual_selector(object) {
            generate_selector(object);
        }
    }

    fn default(&self, object: &mut Value) {
        default_job_spec(child(object, "spec"));
        // The job carries its template's labels when it has none of its own.
        if let Some(labels) = map_at(object, "/spec/template/metadata/labels").cloned() {
            if map_at(object, "/metadata/labels").is_none_or(Map::is_empty) {
                child(object, "metadata").insert("labels".into(), Value::Object(labels));
            }
        }
        default_template(object, "spec.template");
    }

    fn canonicalize(&self, object: &mut Value) {
        // A generated name was not known when the labels were generated.
        let name = generic_server::meta::name(object).to_string();
        for labels in ["/spec/template/metadata/labels", "/metadata/labels"] {
            if let Some(Value::Object(m)) = object.pointer_mut(labels) {
                for key in [JOB_NAME, LEGACY_JOB_NAME] {
                    if m.get(key).and_then(Value::as_str) == Some("") {
                        m.insert(key.into(), json!(name));
                    }
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if !manual_selector(obj) {
            if let Some(sel) = at(obj, "spec.selector") {
                let uid = generic_server::meta::uid(obj);
                let mut expected = Map::new();
                expected.insert(CONTROLLER_UID.into(), json!(uid));
                expected.insert(LEGACY_CONTROLLER_UID.into(), json!(uid));
                let labels = map_at(obj, "/spec/template/metadata/labels");
                if labels.and_then(|l| l.get(CONTROLLER_UID)).and_then(Value::as_str) != Some(uid) {
                    let got = labels.and_then(|l| l.get(CONTROLLER_UID)).cloned().unwrap_or(json!(""));
                    causes.push(Cause::invalid(
                        format!("spec.template.metadata.labels[{CONTROLLER_UID}]"),
                        &got,
                        &format!("must be '{uid}'"),
                    ));
                }
                if !selects(Some(sel), Some(&expected)) {
                    causes.push(invalid_raw("spec.selector", &show(sel), "`selector` not auto-generated"));
                }
            }
        }
        validate_job_spec(&mut causes, obj, "spec");
        let sel = at(obj, "spec.selector");
        match sel {
            None => causes.push(Cause::required("spec.selector", "")),
            Some(s) => validate_label_selector(s, "spec.selector", &mut causes),
        }
        template_matches(&mut causes, obj, sel, "spec.template");
        non_negative(
            &mut causes,
            obj,
            &["status.active", "status.succeeded", "status.failed", "status.ready", "status.terminating"],
        );
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        immutable(&mut causes, new, old, "spec.completions");
        immutable_selector(&mut causes, new, old, "spec.selector");
        for path in ["spec.template", "spec.completionMode"] {
            immutable(&mut causes, new, old, path);
        }
        causes
    }

    fn field_labels(&self, o: &Value) -> Vec<(&'static str, String)> {
        vec![("status.successful", int(o, "status.succeeded").to_string())]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        &["status.successful"]
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Status", "string", "Status of the job."),
            TableColumn::new("Completions", "string", "The number of successfully finished pods and the job's desired completions."),
            TableColumn::new("Duration", "string", "Time required to complete the job."),
            TableColumn::age_column(),
            TableColumn::new("Containers", "string", "Names of each container in the template.").wide(),
            TableColumn::new("Images", "string", "Images referenced by each container in the template.").wide(),
            TableColumn::new("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors").wide(),
        ]
    }

    fn table_row(&self, o: &Value) -> Vec<Value> {
        let succeeded = int(o, "status.succeeded");
        let completions = match at(o, "spec.completions").and_then(Value::as_i64) {
            Some(c) => format!("{succeeded}/{c}"),
            None => match int(o, "spec.parallelism") {
                p if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let [names, images] = container_cells(o, "spec.template");
        let selector = o.pointer(&pointer("spec.selector")).filter(|s| !s.is_null());
        vec![
            json!(generic_server::meta::name(o)),
            json!(status_cell(o)),
            json!(completions),
            json!(duration_cell(o)),
            age(o),
            names,
            images,
            json!(format_label_selector(selector)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(v: Value) -> Value {
        let mut v = generic_server::registry::typed::decode_as::<Job>(v).unwrap().object;
        generic_server::meta::set_meta(&mut v, "uid", json!("u-1"));
        JobStrategy.prepare_for_create(&mut v);
        JobStrategy.default(&mut v);
        v
    }

    fn job() -> Value {
        json!({"metadata": {"name": "pi"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "pi", "image": "perl:5.34"}]}}}})
    }

    #[test]
    fn defaults_and_generated_selector() {
        let j = created(job());
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["parallelism"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(j["spec"]["completionMode"], "NonIndexed");
        assert_eq!(j["spec"]["suspend"], false);
        assert_eq!(j["spec"]["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(j["spec"]["selector"], json!({"matchLabels": {CONTROLLER_UID: "u-1"}}));
        let labels = &j["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels[JOB_NAME], "pi");
        assert_eq!(labels["controller-uid"], "u-1");
        assert_eq!(labels["job-name"], "pi");
        assert_eq!(&j["metadata"]["labels"], labels);
        assert!(JobStrategy.validate(&j).is_empty(), "{:?}", JobStrategy.validate(&j));
    }

    #[test]
    fn restart_policy_and_manual_selector() {
        let mut v = job();
        v["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        let msgs: Vec<String> = JobStrategy.validate(&created(v)).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, ["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]);
        let mut manual = job();
        manual["spec"]["manualSelector"] = json!(true);
        let msgs: Vec<String> = JobStrategy.validate(&created(manual)).iter().map(Cause::full_message).collect();
        assert_eq!(msgs[0], "spec.selector: Required value");
        assert!(msgs[1].starts_with("spec.template.metadata.labels: Invalid value: map[string]string{}"), "{msgs:?}");
    }

    #[test]
    fn immutable_template() {
        let old = created(job());
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5.36");
        new["spec"]["parallelism"] = json!(3);
        let causes = JobStrategy.validate_update(&new, &old);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "spec.template");
    }

    #[test]
    fn row() {
        let mut j = created(job());
        j["status"] = json!({"succeeded": 1, "startTime": "2024-01-01T00:00:00Z", "completionTime": "2024-01-01T00:00:07Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
        let row = JobStrategy.table_row(&j);
        assert_eq!(row.len(), JobStrategy.table_columns().len());
        assert_eq!(&row[1..4], &[json!("Complete"), json!("1/1"), json!("7s")]);
        assert_eq!(row[7], json!(format!("{CONTROLLER_UID}=u-1")));
        assert_eq!(JobStrategy.field_labels(&j), vec![("status.successful", "1".to_string())]);
    }
}
