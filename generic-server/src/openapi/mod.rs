//! OpenAPI v2 and v3 documents for the served types.
