//! `X-Hub-Signature-256`: HMAC-SHA256 of the exact body bytes, keyed by the verify token.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

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

    #[test]
    fn one_byte_changes_the_signature() {
        assert_ne!(signature("k", b"{\"a\":1}"), signature("k", b"{\"a\": 1}"));
        assert_ne!(signature("k", b"x"), signature("K", b"x"));
    }
}
