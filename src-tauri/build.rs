//! Tauri's build step: reads `tauri.conf.json` and `capabilities/` at the top level.
fn main() {
    tauri_build::build()
}
