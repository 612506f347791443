//! flowcontrol.apiserver.k8s.io/v1 prioritylevelconfigurations (upstream
//! pkg/registry/flowcontrol/prioritylevelconfiguration and
//! pkg/apis/flowcontrol/validation): `exempt` and only it is Exempt, Limited
//! levels default their shares and queuing, and the table shows the limits.

use serde_json::{json, Map, Value};

use k8s_openapi::api::flowcontrol::v1::PriorityLevelConfiguration;

use generic_server::meta;
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::flowschema::status_condition_causes;
use super::{age, default_field, str_at};

pub struct PriorityLevelStrategy;

pub fn registration() -> Registration {
    Registration::of::<PriorityLevelConfiguration>(PriorityLevelStrategy).status()
}

/// Upstream's priorityLevelConfigurationQueuingMaxQueues.
const MAX_QUEUES: i64 = 10_000_000;
/// Upstream's shufflesharding.MaxHashBits.
const MAX_HASH_BITS: f64 = 60.0;

fn object_at<'a>(obj: &'a mut Value, pointer: &str) -> Option<&'a mut Map<String, Value>> {
    obj.pointer_mut(pointer).and_then(Value::as_object_mut)
}

fn int_at(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

/// Upstream's ValidatePriorityLevelQueuingConfiguration.
fn validate_queuing(q: &Value, causes: &mut Vec<Cause>) {
    let path = "spec.limited.limitResponse.queuing";
    let (queues, hand, limit) = (
        int_at(q, "/queues").unwrap_or(0),
        int_at(q, "/handSize").unwrap_or(0),
        int_at(q, "/queueLengthLimit").unwrap_or(0),
    );
    if limit <= 0 {
        causes.push(Cause::invalid(format!("{path}.queueLengthLimit"), &json!(limit), "must be positive"));
    }
    if queues <= 0 {
        causes.push(Cause::invalid(format!("{path}.queues"), &json!(queues), "must be positive"));
    } else if queues > MAX_QUEUES {
        causes.push(Cause::invalid(
            format!("{path}.queues"),
            &json!(queues),
            &format!("must not be greater than {MAX_QUEUES}"),
        ));
    }
    if hand <= 0 {
        causes.push(Cause::invalid(format!("{path}.handSize"), &json!(hand), "must be positive"));
    } else if hand > queues {
        causes.push(Cause::invalid(
            format!("{path}.handSize"),
            &json!(hand),
            &format!("should not be greater than queues ({queues})"),
        ));
    } else {
        // Upstream's RequiredEntropyBits: ceil(log2(deck^hand)).
        let bits = ((queues as f64).log2() * hand as f64).ceil();
        if bits > MAX_HASH_BITS {
            causes.push(Cause::invalid(
                format!("{path}.handSize"),
                &json!(hand),
                &format!(
                    "required entropy bits of deckSize {queues} and handSize {hand} should not be greater than 60"
                ),
            ));
        }
    }
}

fn validate_limited(limited: &Value, causes: &mut Vec<Cause>) {
    let path = "spec.limited";
    if let Some(n) = int_at(limited, "/nominalConcurrencyShares").filter(|n| *n < 0) {
        causes.push(Cause::invalid(
            format!("{path}.nominalConcurrencyShares"),
            &json!(n),
            "must be a non-negative integer",
        ));
    }
    let response = limited.get("limitResponse").unwrap_or(&Value::Null);
    let queuing = response.get("queuing").filter(|q| !q.is_null());
    match str_at(response, "/type") {
        "Reject" => {
            if queuing.is_some() {
                causes.push(Cause::forbidden(
                    format!("{path}.limitResponse.queuing"),
                    "must be nil if limited.limitResponse.type is not Limited",
                ));
            }
        }
        "Queue" => match queuing {
            None => causes.push(Cause::required(
                format!("{path}.limitResponse.queuing"),
                "must not be empty if limited.limitResponse.type is Limited",
            )),
            Some(q) => validate_queuing(q, causes),
        },
        other => {
            causes.push(Cause::not_supported(format!("{path}.limitResponse.type"), &json!(other), &["Queue", "Reject"]))
        }
    }
    validate_percent(limited, path, "lendablePercent", causes);
    if let Some(b) = int_at(limited, "/borrowingLimitPercent").filter(|b| *b < 0) {
        causes.push(Cause::invalid(
            format!("{path}.borrowingLimitPercent"),
            &json!(b),
            "if specified, must be a non-negative integer",
        ));
    }
}

fn validate_percent(obj: &Value, path: &str, key: &str, causes: &mut Vec<Cause>) {
    if let Some(p) = int_at(obj, &format!("/{key}")).filter(|p| !(0..=100).contains(p)) {
        causes.push(Cause::invalid(format!("{path}.{key}"), &json!(p), "must be between 0 and 100, inclusive"));
    }
}

impl Strategy for PriorityLevelStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        super::clear_status(obj);
    }

    fn default(&self, obj: &mut Value) {
        if let Some(exempt) = object_at(obj, "/spec/exempt") {
            default_field(exempt, "nominalConcurrencyShares", json!(0));
            default_field(exempt, "lendablePercent", json!(0));
        }
        if let Some(limited) = object_at(obj, "/spec/limited") {
            default_field(limited, "nominalConcurrencyShares", json!(30));
            default_field(limited, "lendablePercent", json!(0));
        }
        if let Some(q) = object_at(obj, "/spec/limited/limitResponse/queuing") {
            for (key, value) in [("handSize", 8), ("queues", 64), ("queueLengthLimit", 50)] {
                if q.get(key).and_then(Value::as_i64).unwrap_or(0) == 0 {
                    q.insert(key.into(), json!(value));
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let t = str_at(obj, "/spec/type");
        if (meta::name(obj) == "exempt") != (t == "Exempt") {
            causes.push(Cause::invalid(
                "spec.type",
                &json!(t),
                "type must be 'Exempt' if and only if name is 'exempt'",
            ));
        }
        let present = |k: &str| obj.pointer(&format!("/spec/{k}")).is_some_and(|v| !v.is_null());
        match t {
            "Exempt" => {
                if present("limited") {
                    causes.push(Cause::forbidden("spec.limited", "must be nil if the type is not Limited"));
                }
                if let Some(exempt) = obj.pointer("/spec/exempt").filter(|v| !v.is_null()) {
                    if let Some(n) = int_at(exempt, "/nominalConcurrencyShares").filter(|n| *n < 0) {
                        causes.push(Cause::invalid(
                            "spec.exempt.nominalConcurrencyShares",
                            &json!(n),
                            "must be a non-negative integer",
                        ));
                    }
                    validate_percent(exempt, "spec.exempt", "lendablePercent", &mut causes);
                }
            }
            "Limited" => {
                if present("exempt") {
                    causes.push(Cause::forbidden("spec.exempt", "must be nil if the type is Limited"));
                }
                match obj.pointer("/spec/limited").filter(|v| !v.is_null()) {
                    None => causes.push(Cause::required("spec.limited", "must not be empty when type is Limited")),
                    Some(l) => validate_limited(l, &mut causes),
                }
            }
            other => causes.push(Cause::not_supported("spec.type", &json!(other), &["Exempt", "Limited"])),
        }
        causes.extend(status_condition_causes(obj));
        causes
    }

    fn validate_subresource_update(&self, _subresource: &str, new: &Value, _old: &Value) -> Vec<Cause> {
        status_condition_causes(new)
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Type", "string", "`type` indicates whether this priority level is subject to limitation on request execution.  A value of `\"Exempt\"` means that requests of this priority level are not subject to a limit (and thus are never queued) and do not detract from the capacity made available to other priority levels.  A value of `\"Limited\"` means that (a) requests of this priority level _are_ subject to limits and (b) some of the server's limited capacity is made available exclusively to this priority level. Required."),
            TableColumn::new("NominalConcurrencyShares", "string", "`nominalConcurrencyShares` (NCS) contributes to the computation of the NominalConcurrencyLimit (NominalCL) of this level."),
            TableColumn::new("Queues", "string", "`queues` is the number of queues for this priority level. The queues exist independently at each apiserver. The value must be positive.  Setting it to 1 effectively precludes shufflesharding and thus makes the distinguisher method of associated flow schemas irrelevant.  This field has a default value of 64."),
            TableColumn::new("HandSize", "string", "`handSize` is a small positive number that configures the shuffle sharding of requests into queues."),
            TableColumn::new("QueueLengthLimit", "string", "`queueLengthLimit` is the maximum number of requests allowed to be waiting in a given queue of this priority level at a time; excess requests are rejected.  This value must be positive.  If not specified, it will be defaulted to 50."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let none = || json!("<none>");
        let cell = |pointer: &str| obj.pointer(pointer).filter(|v| !v.is_null()).cloned().unwrap_or_else(none);
        let limited = obj.pointer("/spec/limited").is_some_and(|v| !v.is_null());
        let (ncs, queues, hand, limit) = if limited {
            let q = "/spec/limited/limitResponse/queuing";
            (
                cell("/spec/limited/nominalConcurrencyShares"),
                cell(&format!("{q}/queues")),
                cell(&format!("{q}/handSize")),
                cell(&format!("{q}/queueLengthLimit")),
            )
        } else {
            (none(), none(), none(), none())
        };
        vec![json!(meta::name(obj)), json!(str_at(obj, "/spec/type")), ncs, queues, hand, limit, age(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(obj: Value) -> Vec<String> {
        PriorityLevelStrategy.validate(&obj).iter().map(Cause::full_message).collect()
    }

    #[test]
    fn limited_levels_default_and_validate() {
        let mut pl = json!({"metadata": {"name": "p"}, "spec": {"type": "Limited", "limited": {"limitResponse": {"type": "Queue", "queuing": {}}}}});
        PriorityLevelStrategy.default(&mut pl);
        assert_eq!(
            pl["spec"]["limited"],
            json!({"nominalConcurrencyShares": 30, "lendablePercent": 0, "limitResponse": {"type": "Queue", "queuing": {"handSize": 8, "queues": 64, "queueLengthLimit": 50}}})
        );
        assert!(messages(pl.clone()).is_empty());
        let row = PriorityLevelStrategy.table_row(&pl);
        assert_eq!(&row[1..6], &[json!("Limited"), json!(30), json!(64), json!(8), json!(50)]);

        let bad = json!({"metadata": {"name": "p"}, "spec": {"type": "Exempt", "limited": {"lendablePercent": 101,
            "limitResponse": {"type": "Queue", "queuing": {"queues": 4, "handSize": 5, "queueLengthLimit": 1}}}}});
        assert_eq!(
            messages(bad),
            [
                "spec.type: Invalid value: \"Exempt\": type must be 'Exempt' if and only if name is 'exempt'",
                "spec.limited: Forbidden: must be nil if the type is not Limited",
            ]
        );
        let mut q = pl.clone();
        q["spec"]["limited"]["limitResponse"]["queuing"] = json!({"queues": 4, "handSize": 5, "queueLengthLimit": 1});
        q["spec"]["limited"]["lendablePercent"] = json!(101);
        assert_eq!(
            messages(q),
            [
                "spec.limited.limitResponse.queuing.handSize: Invalid value: 5: should not be greater than queues (4)",
                "spec.limited.lendablePercent: Invalid value: 101: must be between 0 and 100, inclusive",
            ]
        );
    }

    #[test]
    fn exempt_level_shows_none() {
        let pl = json!({"metadata": {"name": "exempt"}, "spec": {"type": "Exempt", "exempt": {}}});
        assert!(messages(pl.clone()).is_empty());
        let row = PriorityLevelStrategy.table_row(&pl);
        assert_eq!(&row[2..6], &[json!("<none>"), json!("<none>"), json!("<none>"), json!("<none>")]);
    }
}
