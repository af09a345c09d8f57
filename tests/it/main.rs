//! End-to-end tests of Orki Webhooks over real sockets: the engine's listener,
//! HTTPS receivers with certificates made here, a real redb file in a temp dir,
//! and the real `orki-webhooksd` binary for crash and shutdown tests.

mod support;

mod contract;
mod controls;
mod crash_loop;
mod delivery;
mod edges;
mod hangups;
mod ingest;
mod limits;
mod odd_input;
mod offline;
mod openapi;
mod operations;
mod ordering;
mod process;
mod registration;
mod retries;
mod service_unit;
mod signatures;
