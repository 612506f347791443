//! batch/v1 cronjobs (upstream pkg/registry/batch/cronjob): defaults
//! (concurrencyPolicy Allow, not suspended, history limits 3 and 1, the job
//! template's PodSpec defaults), the schedule parsed as robfig/cron's
//! ParseStandard does (five fields or a descriptor, with its error texts),
//! timeZone, concurrencyPolicy, the jobTemplate validated as a Job's spec
//! (without a selector: it is generated per Job), status and the table.

use serde_json::{json, Value};

use k8s_openapi::api::batch::v1::CronJob;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::job::validate_job_spec;
use super::workload::{at, container_cells, default_template, non_negative};
use super::{age, arr_at, child, default_field, format_label_selector, invalid_raw, show, since, str_at};

pub struct CronJobStrategy;

pub fn registration() -> Registration {
    Registration::of::<CronJob>(CronJobStrategy).short_names(&["cj"]).categories(&["all"]).status()
}

const CONCURRENCY: &[&str] = &["Allow", "Forbid", "Replace"];

/// A CronJob's name goes into its Jobs' names with an 11-character suffix.
const MAX_NAME: usize = 52;

/// One field of a cron expression: its bounds and month or weekday names.
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Bounds; 5] = [
    Bounds { min: 0, max: 59, names: &[] },
    Bounds { min: 0, max: 23, names: &[] },
    Bounds { min: 1, max: 31, names: &[] },
    Bounds {
        min: 1,
        max: 12,
        names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    },
    Bounds { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] },
];

fn parse_int(expr: &str) -> Result<u32, String> {
    let n: i64 = expr
        .parse()
        .map_err(|_| format!("failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: invalid syntax"))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    u32::try_from(n)
        .map_err(|_| format!("failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: value out of range"))
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u32, String> {
    let lower = expr.to_ascii_lowercase();
    match b.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(i as u32 + if b.min == 1 { 1 } else { 0 }),
        None => parse_int(expr),
    }
}

/// One comma-separated part of a field: `*`, `?`, `a`, `a-b`, each with an
/// optional `/step`.
fn check_range(expr: &str, b: &Bounds) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (b.min, b.max)
    } else {
        let start = parse_int_or_name(low_high[0], b)?;
        match low_high.len() {
            1 => (start, start),
            2 => (start, parse_int_or_name(low_high[1], b)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            // "N/step" means N through the maximum.
            if low_high.len() == 1 {
                end = b.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expr}", b.min));
    }
    if end > b.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", b.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

/// Go's time.ParseDuration, as far as validity goes.
fn check_go_duration(s: &str) -> Result<(), String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body == "0" {
        return Ok(());
    }
    if body.is_empty() {
        return Err(invalid());
    }
    let mut rest = body;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." {
            return Err(invalid());
        }
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        match &rest[..unit_len] {
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h" => {}
            unit => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        }
        rest = &rest[unit_len..];
    }
    Ok(())
}

/// robfig/cron's ParseStandard, for validity: the error text upstream shows.
pub fn parse_schedule(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        let end = spec.find(' ').unwrap_or(spec.len());
        let zone = &spec[eq + 1..end.max(eq + 1)];
        if zone.parse::<chrono_tz::Tz>().is_err() && zone != "Local" {
            return Err(format!("provided bad location {zone}: unknown time zone {zone}"));
        }
        spec = spec[end..].trim();
    }
    if let Some(d) = spec.strip_prefix('@') {
        return match d {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => Ok(()),
            _ => match spec.strip_prefix("@every ") {
                Some(dur) => check_go_duration(dur).map_err(|e| format!("failed to parse duration {spec}: {e}")),
                None => Err(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    for (field, bounds) in fields.iter().zip(FIELDS.iter()) {
        for part in field.split(',') {
            check_range(part, bounds)?;
        }
    }
    Ok(())
}

/// validateTimeZone: an explicit IANA zone name.
fn validate_time_zone(causes: &mut Vec<Cause>, obj: &Value) {
    let Some(tz) = at(obj, "spec.timeZone") else { return };
    let name = tz.as_str().unwrap_or("");
    if name.is_empty() {
        causes.push(Cause::invalid("spec.timeZone", tz, "timeZone must be nil or non-empty string"));
        return;
    }
    let valid_part = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && !p.is_empty()
            && p.len() <= 14
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
    };
    if !name.split('/').all(valid_part) {
        causes.push(Cause::invalid("spec.timeZone", tz, "unknown time zone"));
        return;
    }
    if name.eq_ignore_ascii_case("Local") {
        causes.push(Cause::invalid(
            "spec.timeZone",
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    } else if name.parse::<chrono_tz::Tz>().is_err() {
        causes.push(Cause::invalid("spec.timeZone", tz, &format!("unknown time zone {name}")));
    }
}

impl Strategy for CronJobStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, object: &mut Value) {
        let spec = child(object, "spec");
        default_field(spec, "concurrencyPolicy", json!("Allow"));
        default_field(spec, "suspend", json!(false));
        default_field(spec, "successfulJobsHistoryLimit", json!(3));
        default_field(spec, "failedJobsHistoryLimit", json!(1));
        default_template(object, "spec.jobTemplate.spec.template");
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let name = generic_server::meta::name(obj);
        if name.len() > MAX_NAME {
            causes.push(Cause::invalid("metadata.name", &json!(name), "must be no more than 52 characters"));
        }
        let schedule = str_at(obj, "/spec/schedule");
        if schedule.is_empty() {
            causes.push(Cause::required("spec.schedule", ""));
        } else {
            if let Err(e) = parse_schedule(schedule) {
                causes.push(Cause::invalid("spec.schedule", &json!(schedule), &e));
            }
            if schedule.contains("TZ") {
                causes.push(Cause::invalid(
                    "spec.schedule",
                    &json!(schedule),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            }
        }
        validate_time_zone(&mut causes, obj);
        non_negative(&mut causes, obj, &["spec.startingDeadlineSeconds"]);
        let policy = at(obj, "spec.concurrencyPolicy").cloned().unwrap_or(json!(""));
        match policy.as_str() {
            Some("") => causes.push(Cause::required("spec.concurrencyPolicy", "")),
            Some(p) if CONCURRENCY.contains(&p) => {}
            _ => causes.push(Cause::not_supported("spec.concurrencyPolicy", &policy, CONCURRENCY)),
        }
        validate_job_spec(&mut causes, obj, "spec.jobTemplate.spec");
        if let Some(sel) = at(obj, "spec.jobTemplate.spec.selector") {
            causes.push(invalid_raw("spec.jobTemplate.spec.selector", &show(sel), "`selector` will be auto-generated"));
        }
        if let Some(manual) = at(obj, "spec.jobTemplate.spec.manualSelector").filter(|m| m.as_bool() == Some(true)) {
            causes.push(Cause::not_supported("spec.jobTemplate.spec.manualSelector", manual, &["nil", "false"]));
        }
        non_negative(&mut causes, obj, &["spec.successfulJobsHistoryLimit", "spec.failedJobsHistoryLimit"]);
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            TableColumn::new("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"),
            TableColumn::new("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
            TableColumn::new("Active", "integer", "A list of pointers to currently running jobs."),
            TableColumn::new("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
            TableColumn::age_column(),
            TableColumn::new("Containers", "string", "Names of each container in the template.").wide(),
            TableColumn::new("Images", "string", "Images referenced by each container in the template.").wide(),
            TableColumn::new("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors").wide(),
        ]
    }

    fn table_row(&self, o: &Value) -> Vec<Value> {
        let or_none = |s: &str| if s.is_empty() { "<none>".to_string() } else { s.to_string() };
        let suspend = match at(o, "spec.suspend").and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let last = str_at(o, "/status/lastScheduleTime");
        let last = if last.is_empty() { "<none>".to_string() } else { since(last) };
        let [names, images] = container_cells(o, "spec.jobTemplate.spec.template");
        vec![
            json!(generic_server::meta::name(o)),
            json!(str_at(o, "/spec/schedule")),
            json!(or_none(str_at(o, "/spec/timeZone"))),
            json!(suspend),
            json!(arr_at(o, "/status/active").len()),
            json!(last),
            age(o),
            names,
            images,
            json!(format_label_selector(at(o, "spec.jobTemplate.spec.selector"))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        for ok in [
            "*/5 * * * *",
            "0 0 1 jan,jul MON-fri",
            "@hourly",
            "@every 1h30m",
            "15 3 * * 0",
            "0 9-17/2 * * 1-5",
            "? * * * *",
        ] {
            assert_eq!(parse_schedule(ok), Ok(()), "{ok}");
        }
        for (bad, msg) in [
            ("foo", "expected exactly 5 fields, found 1: [foo]"),
            ("61 * * * *", "end of range (61) above maximum (59): 61"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("x * * * *", "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"),
            ("5-2 * * * *", "beginning of range (5) beyond end of range (2): 5-2"),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            ("@often", "unrecognized descriptor: @often"),
            ("@every 5", "failed to parse duration @every 5: time: missing unit in duration \"5\""),
        ] {
            assert_eq!(parse_schedule(bad), Err(msg.to_string()), "{bad}");
        }
    }

    fn created(v: Value) -> Value {
        let mut v = generic_server::registry::typed::decode_as::<CronJob>(v).unwrap().object;
        CronJobStrategy.prepare_for_create(&mut v);
        CronJobStrategy.default(&mut v);
        v
    }

    fn cron() -> Value {
        json!({"metadata": {"name": "nightly"}, "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    }

    #[test]
    fn defaults_and_row() {
        let c = created(cron());
        assert_eq!(c["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(c["spec"]["suspend"], false);
        assert_eq!(c["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(c["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(CronJobStrategy.validate(&c).is_empty(), "{:?}", CronJobStrategy.validate(&c));
        let row = CronJobStrategy.table_row(&c);
        assert_eq!(row.len(), CronJobStrategy.table_columns().len());
        assert_eq!(&row[1..6], &[json!("0 3 * * *"), json!("<none>"), json!("False"), json!(0), json!("<none>")]);
        assert_eq!(row[9], json!("<none>"));
    }

    #[test]
    fn invalid_fields() {
        let mut v = cron();
        v["spec"]["schedule"] = json!("TZ=UTC 0 3 * * *");
        v["spec"]["timeZone"] = json!("Mars/Olympus");
        v["spec"]["concurrencyPolicy"] = json!("Sometimes");
        v["spec"]["jobTemplate"]["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
        v["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        let msgs: Vec<String> = CronJobStrategy.validate(&created(v)).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, [
            "spec.schedule: Invalid value: \"TZ=UTC 0 3 * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            "spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus",
            "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
            "spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
            "spec.jobTemplate.spec.selector: Invalid value: {\"matchLabels\":{\"a\":\"b\"}}: `selector` will be auto-generated",
        ]);
    }
}
