//! The `orki-webhooks` desktop binary.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

/// The engine's allocator, as in `orki-webhooksd` (docs/BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    orki_webhooks::run()
}
