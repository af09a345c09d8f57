//! The Orki Webhooks engine: everything the product does, without a window.
//!
//! Local tools post events to the HTTP listener; the engine stores each event
//! and one delivery job per subscribed webhook in a single redb transaction,
//! answers `202` only after that commit, then signs and delivers every job,
//! retrying failures on a backoff schedule that survives restarts. Every
//! attempt is recorded for the delivery log.
//!
//! # Layout
//! Modules by concept; imports only go down this ladder (no module imports
//! one above it, `scripts/check-module-cycles` checks there is no cycle):
//!
//! 1. Leaves, data and pure checks, no I/O: `clock` (the one source of time,
//!    which tests drive), [`ids`], `secret`, [`event_types`]
//!    (the catalogue and its sample payloads), [`verification`] (why a handshake
//!    failed), [`model`] (records as stored and as shown), [`retry`] (the pure
//!    backoff policy), [`settings`] (run-time settings), `signing`
//!    (`X-Hub-Signature-256`), [`private_files`] (owner-only files), `error`
//!    (the crate's error type and its one [`ErrorBody`]), `listener`
//!    (connections served within limits), `outbound` (the HTTP client: system
//!    roots plus extra CAs, no redirects, failures classified), [`network`]
//!    (online or offline: the interface and route checks), [`config`].
//! 2. [`store`]: the only module that names redb, a file per table family
//!    (meta, webhooks, events, deliveries, attempts, prune). The rest of the
//!    engine calls its async, business-level seam only: the store threads'
//!    calls and admin writes, and `store::commit`, the group commit made
//!    durable by [`store::wal`]; `store::tables` and [`store::codec`] are
//!    the persisted format.
//!    `queue` is the due queue in memory, [`query`] parses log queries.
//! 3. `handshake` (the ownership check before a webhook is saved) and
//!    `attempt` (one signed request and its record).
//! 4. [`engine`]: [`EngineHandle`], every operation of the product (a file per
//!    area), the one API both the HTTP layer and the desktop shell call.
//! 5. Workers and the HTTP layer on the handle: `delivery` (the scheduler:
//!    the due queue within the concurrency limits, overall and per webhook),
//!    [`retention`] (pruning by age and size), [`http`] (the axum router, the
//!    OpenAPI document in `http::openapi`, the embedded UI in `http::ui`).
//! 6. `runtime`: [`Engine::start`] wires them together; [`telemetry`]: tracing
//!    to stderr and daily rolling files, used by the binaries.

// `pub` is for what the desktop shell, the tests and the benches use.
#![warn(unreachable_pub)]

pub(crate) mod attempt;
pub(crate) mod clock;
pub mod config;
pub(crate) mod delivery;
pub mod engine;
pub(crate) mod error;
pub mod event_types;
pub(crate) mod handshake;
pub mod http;
pub mod ids;
pub(crate) mod listener;
pub mod model;
pub mod network;
pub(crate) mod outbound;
pub mod private_files;
pub mod query;
pub(crate) mod queue;
pub(crate) mod rate;
pub mod retention;
pub mod retry;
pub(crate) mod runtime;
pub(crate) mod secret;
pub mod settings;
pub(crate) mod signing;
pub mod store;
mod sync;
pub mod telemetry;
pub mod verification;

pub use config::Config;
pub use engine::{EngineEvent, EngineHandle};
pub use error::{Error, ErrorBody, Result};
pub use listener::raise_open_file_limit;
pub use runtime::Engine;
pub use secret::Secret;
pub use store::Store;

/// The version sent in `User-Agent` and reported by `/v1/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
