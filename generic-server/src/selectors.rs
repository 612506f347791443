//! Label and field selectors in upstream's string syntax.

use serde_json::{Map, Value};

use crate::status::StatusError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    Greater(String, i64),
    Less(String, i64),
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

fn bad(sel: &str, why: &str) -> StatusError {
    StatusError::bad_request(format!("unable to parse requirement: {why} in selector {sel:?}"))
}

/// Splits at commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, StatusError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for raw in split_top(s) {
            let part = raw.trim();
            if part.is_empty() {
                return Err(bad(s, "empty requirement"));
            }
            let req = if let Some(k) = part.strip_prefix('!') {
                let k = k.trim();
                if !valid_key(k) {
                    return Err(bad(s, "invalid label key"));
                }
                Requirement::DoesNotExist(k.to_string())
            } else if let Some((k, rest)) = split_word_op(part) {
                let (op, vals) = rest;
                let vals = vals.trim();
                if !(vals.starts_with('(') && vals.ends_with(')')) {
                    return Err(bad(s, "expected a parenthesized list of values"));
                }
                let list: Vec<String> = vals[1..vals.len() - 1]
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                if list.iter().any(|v| !valid_value(v)) || !valid_key(k) {
                    return Err(bad(s, "invalid label key or value"));
                }
                if op == "in" {
                    Requirement::In(k.to_string(), list)
                } else {
                    Requirement::NotIn(k.to_string(), list)
                }
            } else if let Some((k, v)) = part.split_once("!=") {
                check_kv(s, k, v)?;
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                check_kv(s, k, v)?;
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                check_kv(s, k, v)?;
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('>') {
                let n =
                    v.trim().parse().map_err(|_| bad(s, "for 'Gt', 'Lt' operators, the value must be an integer"))?;
                Requirement::Greater(k.trim().into(), n)
            } else if let Some((k, v)) = part.split_once('<') {
                let n =
                    v.trim().parse().map_err(|_| bad(s, "for 'Gt', 'Lt' operators, the value must be an integer"))?;
                Requirement::Less(k.trim().into(), n)
            } else {
                if !valid_key(part) {
                    return Err(bad(s, "invalid label key"));
                }
                Requirement::Exists(part.to_string())
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Converts a metav1.LabelSelector object (matchLabels, matchExpressions).
    pub fn from_object(sel: &Value) -> Self {
        let mut reqs = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                reqs.push(Requirement::Equals(k.clone(), v.as_str().unwrap_or("").to_string()));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or("").to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                    "In" => reqs.push(Requirement::In(key, values)),
                    "NotIn" => reqs.push(Requirement::NotIn(key, values)),
                    "Exists" => reqs.push(Requirement::Exists(key)),
                    "DoesNotExist" => reqs.push(Requirement::DoesNotExist(key)),
                    _ => {}
                }
            }
        }
        LabelSelector(reqs)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
            Requirement::Greater(k, n) => get(k).and_then(|l| l.parse::<i64>().ok()).is_some_and(|l| l > *n),
            Requirement::Less(k, n) => get(k).and_then(|l| l.parse::<i64>().ok()).is_some_and(|l| l < *n),
        })
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::NotEquals(k, v) => format!("{k}!={v}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
                Requirement::Greater(k, n) => format!("{k}>{n}"),
                Requirement::Less(k, n) => format!("{k}<{n}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn check_kv(sel: &str, k: &str, v: &str) -> Result<(), StatusError> {
    if !valid_key(k.trim()) {
        return Err(bad(sel, "invalid label key"));
    }
    if !valid_value(v.trim()) {
        return Err(bad(sel, "invalid label value"));
    }
    Ok(())
}

/// "key in (a,b)" / "key notin (a)": returns the key and (operator, rest).
fn split_word_op(part: &str) -> Option<(&str, (&'static str, &str))> {
    for op in [" notin ", " in "] {
        if let Some(i) = part.find(op) {
            return Some((part[..i].trim(), (op.trim(), &part[i + op.len()..])));
        }
    }
    for op in ["notin(", "in("] {
        if let Some(i) = part.find(op) {
            let key = part[..i].trim();
            if !key.is_empty() && part[..i].ends_with(' ') {
                return Some((key, (op.trim_end_matches('('), &part[i + op.len() - 1..])));
            }
        }
    }
    None
}

/// A field selector: `field=value`, `field==value`, `field!=value`, joined by commas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, StatusError> {
        let mut out = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector(out));
        }
        for part in s.split(',') {
            let part = part.trim();
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(StatusError::bad_request(format!("invalid selector: '{s}'; can't understand '{part}'")));
            };
            out.push((k.trim().to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value the selector requires `field` to equal, if it does.
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(k, eq, _)| *eq && k == field).map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, fields: &[(&str, String)]) -> bool {
        self.0.iter().all(|(k, eq, v)| {
            let actual = fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str()).unwrap_or("");
            (actual == v) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_selectors() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        for (sel, want) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web,db)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier in (back)", false),
            ("", true),
        ] {
            assert_eq!(LabelSelector::parse(sel).unwrap().matches(&l), want, "{sel}");
        }
        assert!(LabelSelector::parse("a=b=c").is_err());
        assert!(LabelSelector::parse("app in web").is_err());
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("metadata.name=x,status.phase!=Running").unwrap();
        assert!(f.matches(&[("metadata.name", "x".into()), ("status.phase", "Pending".into())]));
        assert!(!f.matches(&[("metadata.name", "x".into()), ("status.phase", "Running".into())]));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
