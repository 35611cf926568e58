//! Process plumbing shared by every long-running subcommand (`operator`, `replicate`,
//! `checkpoint-sync`): one way to log, one HTTP server for `/metrics`, `/healthz` and
//! `/readyz`, one reading of termination signals, one duration syntax.

pub mod duration;
pub mod http;
pub mod logging;
pub mod signal;

pub use duration::parse_duration;
pub use http::{Endpoints, encode_registry, serve, serve_with};
pub use logging::{LogFormat, init_logging};
pub use signal::termination;
