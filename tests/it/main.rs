//! Integration tests: one binary, real databases, real servers on port 0.
mod actors;
mod audit;
mod backchannel;
mod cli;
mod clients;
mod crash;
mod evidence;
mod http_sinks;
mod oidc_certs;
mod oidc_flow;
mod read_models;
mod rejections;
mod server;
mod sinks;
mod store_contract;
mod support;
mod users_model;
