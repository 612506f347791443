//! REST endpoints: turning requests into Store calls and Store results into responses.
