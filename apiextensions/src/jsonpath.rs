//! The JSONPath subset additionalPrinterColumns and selectableFields use:
//! `.a.b`, `.a[0]`, `.a[*].b`, `.a['dotted.key']` and filters
//! `.a[?(@.type=="Ready")].status`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter { path: Vec<String>, value: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

impl JsonPath {
    pub fn parse(src: &str) -> Result<JsonPath, String> {
        let mut s = src.trim();
        if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            s = inner.trim();
        }
        let s = s.strip_prefix('$').unwrap_or(s);
        if !s.starts_with('.') && !s.starts_with('[') {
            return Err(format!("{src:?}: must start with a '.'"));
        }
        let chars: Vec<char> = s.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                        j += 1;
                    }
                    let name: String = chars[start..j].iter().collect();
                    if name.is_empty() {
                        if j == chars.len() && steps.is_empty() {
                            break;
                        }
                        return Err(format!("{src:?}: empty field name"));
                    }
                    if !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '$') {
                        return Err(format!("{src:?}: unexpected characters in {name:?}"));
                    }
                    steps.push(Step::Field(name));
                    i = j;
                }
                '[' => {
                    let close = find_close(&chars, i).ok_or_else(|| format!("{src:?}: unterminated '['"))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    let inner = inner.trim();
                    if inner == "*" {
                        steps.push(Step::All);
                    } else if let Some(f) = inner.strip_prefix("?(").and_then(|r| r.strip_suffix(')')) {
                        let (lhs, rhs) = f.split_once("==").ok_or_else(|| format!("{src:?}: unsupported filter"))?;
                        let lhs =
                            lhs.trim().strip_prefix("@.").ok_or_else(|| format!("{src:?}: unsupported filter"))?;
                        let rhs = rhs.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
                        steps.push(Step::Filter { path: lhs.split('.').map(str::to_string).collect(), value: rhs });
                    } else if (inner.starts_with('\'') && inner.ends_with('\'') && inner.len() >= 2)
                        || (inner.starts_with('"') && inner.ends_with('"') && inner.len() >= 2)
                    {
                        steps.push(Step::Field(inner[1..inner.len() - 1].to_string()));
                    } else {
                        let n = inner.parse::<i64>().map_err(|_| format!("{src:?}: unsupported index {inner:?}"))?;
                        steps.push(Step::Index(n));
                    }
                    i = close + 1;
                }
                c => return Err(format!("{src:?}: unexpected {c:?}")),
            }
        }
        Ok(JsonPath(steps))
    }

    /// Whether the path names one field without wildcards or filters.
    pub fn is_simple(&self) -> bool {
        self.0.iter().all(|s| matches!(s, Step::Field(_)))
    }

    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![root];
        for step in &self.0 {
            let mut next = Vec::new();
            for v in cur {
                match step {
                    Step::Field(f) => next.extend(v.get(f)),
                    Step::Index(n) => {
                        if let Some(a) = v.as_array() {
                            let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                            if idx >= 0 {
                                next.extend(a.get(idx as usize));
                            }
                        }
                    }
                    Step::All => match v {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter { path, value } => {
                        if let Some(a) = v.as_array() {
                            for item in a {
                                let got = path.iter().try_fold(item, |x, k| x.get(k));
                                let matches = match got {
                                    Some(Value::String(s)) => s == value,
                                    Some(other) => &other.to_string() == value,
                                    None => false,
                                };
                                if matches {
                                    next.push(item);
                                }
                            }
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }
}

fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if *c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(*c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let obj = json!({"spec": {"replicas": 3, "hosts": ["a", "b"]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]},
            "metadata": {"labels": {"app.kubernetes.io/name": "x"}}});
        let p = |s: &str| JsonPath::parse(s).unwrap();
        assert_eq!(p(".spec.replicas").find(&obj), vec![&json!(3)]);
        assert_eq!(p(".spec.hosts[1]").find(&obj), vec![&json!("b")]);
        assert_eq!(p(".spec.hosts[*]").find(&obj).len(), 2);
        assert_eq!(p(".status.conditions[?(@.type==\"Ready\")].status").find(&obj), vec![&json!("True")]);
        assert_eq!(p(".metadata.labels['app.kubernetes.io/name']").find(&obj), vec![&json!("x")]);
        assert!(p(".spec.missing").find(&obj).is_empty());
        assert!(JsonPath::parse("spec").is_err());
        assert!(JsonPath::parse(".spec[").is_err());
        assert!(p(".spec.replicas").is_simple());
    }
}
