//! Settings of the desktop app itself (not of the engine): what closing the
//! window does, whether the admin was told that it keeps delivering, and
//! starting at login (the autostart plugin's entry is the truth for that one).
//!
//! Kept in `desktop.json` in the app data directory (`0600`, written whole).

use std::path::{Path, PathBuf};

use orki_engine::{Error, private_files};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What closing the window does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CloseAction {
    /// The window goes away; the engine and the tray stay (the default).
    #[default]
    Background,
    /// The app quits, as it did before there was a tray.
    Quit,
}

/// What `desktop.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stored {
    /// What closing the window does.
    pub close_action: CloseAction,
    /// The "keeps delivering in the background" notice was shown once.
    pub background_notice_shown: bool,
}

/// The file and what it holds now.
pub struct DesktopSettings {
    path: PathBuf,
    stored: Stored,
}

/// What the settings page shows and changes.
#[derive(Debug, Clone, Serialize)]
pub struct DesktopView {
    /// What closing the window does.
    pub close_action: CloseAction,
    /// Whether the app starts, hidden, when the user logs in.
    pub start_at_login: bool,
}

/// A change from the settings page: each field optional.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DesktopPatch {
    /// A new close action.
    pub close_action: Option<CloseAction>,
    /// Start at login on or off.
    pub start_at_login: Option<bool>,
}

impl DesktopPatch {
    /// Reads a patch, refusing unknown fields and wrong values with the
    /// engine's `invalid_setting` error (nothing is changed then).
    pub fn parse(patch: &Map<String, Value>) -> Result<Self, Error> {
        let mut out = DesktopPatch::default();
        for (key, value) in patch {
            match key.as_str() {
                "close_action" => {
                    out.close_action = Some(match value.as_str() {
                        Some("background") => CloseAction::Background,
                        Some("quit") => CloseAction::Quit,
                        _ => {
                            return Err(Error::invalid(
                                "invalid_setting",
                                "close_action must be \"background\" or \"quit\"",
                            ));
                        }
                    })
                }
                "start_at_login" => {
                    out.start_at_login = Some(value.as_bool().ok_or_else(|| {
                        Error::invalid("invalid_setting", "start_at_login must be true or false")
                    })?)
                }
                other => {
                    return Err(Error::invalid(
                        "invalid_setting",
                        format!("unknown desktop setting: {other}"),
                    ));
                }
            }
        }
        Ok(out)
    }
}

impl DesktopSettings {
    /// Reads `desktop.json` in `dir`; a missing or unreadable file gives the
    /// defaults (logged when it exists but cannot be read).
    pub fn load(dir: &Path) -> Self {
        let path = dir.join("desktop.json");
        let stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "desktop settings unreadable: using the defaults");
                Stored::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "desktop settings unreadable: using the defaults");
                Stored::default()
            }
        };
        DesktopSettings { path, stored }
    }

    /// What is stored now.
    pub fn stored(&self) -> &Stored {
        &self.stored
    }

    /// Changes what is stored, written to disk before it counts.
    pub fn change(&mut self, f: impl FnOnce(&mut Stored)) -> Result<(), Error> {
        let mut next = self.stored.clone();
        f(&mut next);
        let bytes = serde_json::to_vec_pretty(&next)
            .map_err(|e| Error::Internal(format!("encoding desktop settings: {e}")))?;
        private_files::write_file(&self.path, &bytes)?;
        self.stored = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_patch_takes_known_values_and_refuses_the_rest() {
        let ok = DesktopPatch::parse(&patch(
            serde_json::json!({"close_action": "quit", "start_at_login": true}),
        ));
        assert_eq!(
            ok.ok(),
            Some(DesktopPatch {
                close_action: Some(CloseAction::Quit),
                start_at_login: Some(true)
            })
        );
        for bad in [
            serde_json::json!({"close_action": "hide"}),
            serde_json::json!({"start_at_login": "yes"}),
            serde_json::json!({"minimise": true}),
        ] {
            let e = DesktopPatch::parse(&patch(bad))
                .err()
                .map(|e| e.body().code);
            assert_eq!(e, Some("invalid_setting"));
        }
    }

    #[test]
    fn settings_survive_a_restart_and_a_damaged_file_gives_the_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = DesktopSettings::load(dir.path());
        assert_eq!(s.stored().close_action, CloseAction::Background);
        s.change(|s| {
            s.close_action = CloseAction::Quit;
            s.background_notice_shown = true;
        })
        .expect("saved");
        let again = DesktopSettings::load(dir.path());
        assert_eq!(again.stored().close_action, CloseAction::Quit);
        assert!(again.stored().background_notice_shown);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("desktop.json"))
                .expect("file")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join("desktop.json"), b"{not json").expect("write");
        assert_eq!(
            DesktopSettings::load(dir.path()).stored().close_action,
            CloseAction::Background
        );
    }
}
