//! The TLS listener and the filter chain in front of the first server.
