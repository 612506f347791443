//! Protobuf (application/vnd.kubernetes.protobuf) for built-in types.
// Placeholder until the conversion layer lands (helper-2 replaces this file).
use crate::status::StatusError;
use serde_json::Value;
pub fn decode(_body: &[u8]) -> Result<Value, StatusError> {
    Err(StatusError::unsupported_media_type("application/vnd.kubernetes.protobuf"))
}
pub fn encode(_obj: &Value) -> Result<Vec<u8>, StatusError> {
    Err(StatusError::not_acceptable("application/vnd.kubernetes.protobuf"))
}
