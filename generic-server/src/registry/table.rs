//! Server-side printing: `meta.k8s.io/v1` Table, as `kubectl get` asks for.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::meta;

#[derive(Debug, Clone, PartialEq)]
pub struct TableColumn {
    pub name: Cow<'static, str>,
    /// OpenAPI type: string, integer, number, boolean, date.
    pub type_: Cow<'static, str>,
    pub format: Cow<'static, str>,
    pub description: Cow<'static, str>,
    pub priority: i32,
}

impl TableColumn {
    pub const fn new(name: &'static str, type_: &'static str, description: &'static str) -> Self {
        TableColumn {
            name: Cow::Borrowed(name),
            type_: Cow::Borrowed(type_),
            format: Cow::Borrowed(""),
            description: Cow::Borrowed(description),
            priority: 0,
        }
    }
    pub const fn name_column() -> Self {
        TableColumn {
            name: Cow::Borrowed("Name"),
            type_: Cow::Borrowed("string"),
            format: Cow::Borrowed("name"),
            description: Cow::Borrowed("Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated."),
            priority: 0,
        }
    }
    pub const fn age_column() -> Self {
        TableColumn::new(
            "Age",
            "string",
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
        )
    }
    pub const fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "type": self.type_, "format": self.format, "description": self.description, "priority": self.priority})
    }
}

pub fn default_columns() -> Vec<TableColumn> {
    vec![TableColumn::name_column(), TableColumn::age_column()]
}

pub fn default_row(object: &Value) -> Vec<Value> {
    vec![json!(meta::name(object)), json!(age(object))]
}

/// Upstream's default table convertor (apiserver rest/table.go), which
/// built-in kinds without a printer of their own use: Name and Created At.
pub fn created_at_columns() -> Vec<TableColumn> {
    let mut created = TableColumn::age_column();
    created.name = Cow::Borrowed("Created At");
    created.type_ = Cow::Borrowed("date");
    vec![TableColumn::name_column(), created]
}

/// The cells of [`created_at_columns`]: the creation time as stored (RFC 3339).
pub fn created_at_row(object: &Value) -> Vec<Value> {
    vec![json!(meta::name(object)), json!(meta::meta_str(object, "creationTimestamp"))]
}

/// The object's age as kubectl prints it ("5s", "3m2s", "4h", "2d3h", "2y").
pub fn age(object: &Value) -> String {
    let created = meta::meta_str(object, "creationTimestamp");
    match chrono::DateTime::parse_from_rfc3339(created) {
        Ok(t) => human_duration(chrono::Utc::now().signed_duration_since(t).num_seconds()),
        Err(_) => "<unknown>".into(),
    }
}

/// Upstream's duration.HumanDuration.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let secs = secs.max(0);
    if secs < 120 {
        return format!("{secs}s");
    }
    let mins = secs / 60;
    if mins < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{mins}m") } else { format!("{mins}m{s}s") };
    }
    if mins < 180 {
        return format!("{mins}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = mins % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{d}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::human_duration;
    #[test]
    fn durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(3600 * 24 * 3), "3d");
    }
}
