//! Integration tests: one binary, real databases, real servers on port 0.
mod store_contract;
mod support;
