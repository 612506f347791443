//! Patch application: JSON patch, merge patch, strategic merge patch.
// Placeholder until the patch module lands (helper-3 replaces this file).
use crate::status::StatusError;
use serde_json::Value;
pub fn json_patch(doc: &Value, patch: &[u8]) -> Result<Value, StatusError> {
    let p: json_patch::Patch = serde_json::from_slice(patch).map_err(|e| StatusError::bad_request(e.to_string()))?;
    let mut d = doc.clone();
    json_patch::patch(&mut d, &p).map_err(|e| StatusError::new(422, "Invalid", e.to_string()))?;
    Ok(d)
}
pub fn merge_patch(doc: &Value, patch: &[u8]) -> Result<Value, StatusError> {
    let p: Value = serde_json::from_slice(patch).map_err(|e| StatusError::bad_request(e.to_string()))?;
    let mut d = doc.clone();
    json_patch::merge(&mut d, &p);
    Ok(d)
}
pub fn strategic_merge_patch(doc: &Value, patch: &[u8], _type_name: &str) -> Result<Value, StatusError> {
    merge_patch(doc, patch)
}
