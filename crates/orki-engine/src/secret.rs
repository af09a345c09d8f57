//! Secrets (ingest key, admin token, verify tokens) that never show in `Debug` or logs.

use rand::Rng;
use rand::distr::Alphanumeric;

/// A secret string. `Debug` prints `Secret(***)`; compare with [`Secret::matches`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// A fresh random secret: `prefix` followed by 40 alphanumeric characters (~238 bits).
    pub fn generate(prefix: &str) -> Self {
        let body: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        Self(format!("{prefix}{body}"))
    }

    /// The value itself, for signing or for showing to the admin on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with a presented credential in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let a = self.0.as_bytes();
        let b = presented.as_bytes();
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_matching_is_exact() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter3"));
        assert!(!s.matches("hunter22"));
        let g = Secret::generate("ik_");
        assert!(g.expose().starts_with("ik_") && g.expose().len() == 43);
        assert_ne!(g, Secret::generate("ik_"));
    }
}
