//! Protobuf (application/vnd.kubernetes.protobuf) for built-in types.
