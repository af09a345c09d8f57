//! The `orki-webhooks` desktop binary.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    orki_webhooks::run()
}
