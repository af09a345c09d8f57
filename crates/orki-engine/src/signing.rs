//! Signatures: `X-Hub-Signature-256` (HMAC-SHA256 of the exact body bytes,
//! keyed by the verify token) and Standard Webhooks (`webhook-signature`:
//! HMAC-SHA256 of `"<id>.<timestamp>.<body>"`, keyed by the base64 bytes
//! of a `whsec_` secret).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::Secret;

/// The prefix of a Standard Webhooks secret.
pub(crate) const WHSEC: &str = "whsec_";

/// A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes.
pub(crate) fn generate_whsec() -> Secret {
    let bytes: [u8; 32] = rand::random();
    Secret::new(format!("{WHSEC}{}", BASE64.encode(bytes)))
}

/// `v1,<base64 HMAC-SHA256(key = secret bytes, "<id>.<timestamp>.<body>")>`.
pub(crate) fn standard_signature(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let text = secret.expose();
    let encoded = text.strip_prefix(WHSEC).unwrap_or(text);
    // A secret the engine made always decodes; anything else signs with its bytes.
    let key = BASE64
        .decode(encoded)
        .unwrap_or_else(|_| encoded.as_bytes().to_vec());
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The header that carries the signature.
pub(crate) const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// `sha256=<lowercase hex HMAC-SHA256(key = token, message = body)>`.
pub(crate) fn signature(token: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers computed independently (`openssl dgst -sha256 -hmac`) and
    /// RFC 4231 test case 2.
    #[test]
    fn known_answer_vectors() {
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(
            signature("", b""),
            "sha256=b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"
        );
    }

    /// The example of the Standard Webhooks specification
    /// (github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md).
    #[test]
    fn standard_signature_matches_the_specification_example() {
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let made = generate_whsec();
        assert!(made.expose().starts_with(WHSEC));
        assert_eq!(
            BASE64
                .decode(&made.expose()[WHSEC.len()..])
                .map(|b| b.len())
                .ok(),
            Some(32)
        );
    }

    #[test]
    fn one_byte_changes_the_signature() {
        assert_ne!(signature("k", b"{\"a\":1}"), signature("k", b"{\"a\": 1}"));
        assert_ne!(signature("k", b"x"), signature("K", b"x"));
    }
}
