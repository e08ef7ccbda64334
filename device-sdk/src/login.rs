//! MQTT login tokens (PROTOCOL.md, "MQTT session").
//!
//! A device logs in to a groundtruth broker with client id = username = its device id in
//! lower-case hex (64 characters) and, as password, a **login token**:
//!
//! ```text
//! token    = unix_seconds (u64 big-endian, 8 bytes) ‖ signature (64 bytes)      (72 bytes)
//! password = lower-case hex(token)                                                (144 characters)
//! message  = LOGIN_DOMAIN_TAG ‖ client id (UTF-8 bytes) ‖ unix_seconds (u64 big-endian)
//! signature = Ed25519-Sign(device key, message)
//! ```
//!
//! The broker checks it with [`verify_login`]: names first, then the token's format, then the
//! time window, then the signature (ZIP-215, the rule readings use). No clock is read here:
//! the caller passes the time, so this module is `no_std` and allocation-free (except
//! [`login_token`], which returns a `String`).
//!
//! A token proves that the key holder signed it recently; it is not single-use. Anyone who
//! sees one (plain-text MQTT) can log in as the device until it leaves the skew window, so
//! production brokers should be reached over TLS.

use crate::reading::DeviceId;
use crate::signing::DeviceKey;

/// Domain-separation tag of the login message (26 bytes).
pub const LOGIN_DOMAIN_TAG: &[u8] = b"groundtruth/v1/mqtt-login\0";

/// Length of a device's MQTT client id and username: its id in hex.
pub const LOGIN_CLIENT_ID_LEN: usize = 64;

/// Length of a login token in bytes: 8 (time) + 64 (signature).
pub const LOGIN_TOKEN_LEN: usize = 8 + 64;

/// Length of a login token's hex encoding, i.e. of the MQTT password.
pub const LOGIN_TOKEN_HEX_LEN: usize = 2 * LOGIN_TOKEN_LEN;

/// Default tolerance between the token's time and the broker's clock, in both directions.
pub const DEFAULT_LOGIN_SKEW_SECS: u64 = 300;

/// Longest client id [`login_token_bytes`] signs (the protocol uses exactly 64 bytes).
pub const MAX_LOGIN_CLIENT_ID_LEN: usize = 256;

const MAX_LOGIN_MESSAGE_LEN: usize = LOGIN_DOMAIN_TAG.len() + MAX_LOGIN_CLIENT_ID_LEN + 8;

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The client id is not the device id in lower-case hex (64 characters).
    #[error("client id is not the device id in lower-case hex")]
    ClientIdMismatch,
    /// The username differs from the client id.
    #[error("username differs from the client id")]
    UsernameMismatch,
    /// The password is not 144 characters long.
    #[error("login token is {got} characters, {LOGIN_TOKEN_HEX_LEN} expected")]
    TokenLength {
        /// Characters received.
        got: usize,
    },
    /// The password holds a character other than `0-9a-f`.
    #[error("login token is not lower-case hex")]
    TokenNotHex,
    /// The token's time is more than the allowed skew before the broker's clock.
    #[error("login token from {issued} is stale at {now}")]
    Stale {
        /// The token's time, Unix seconds.
        issued: u64,
        /// The broker's time, Unix seconds.
        now: u64,
    },
    /// The token's time is more than the allowed skew after the broker's clock.
    #[error("login token from {issued} is in the future at {now}")]
    Future {
        /// The token's time, Unix seconds.
        issued: u64,
        /// The broker's time, Unix seconds.
        now: u64,
    },
    /// The device key is weak or does not decode (never registered, but checked anyway).
    #[error("device key is weak or not a curve point")]
    WeakKey,
    /// The signature does not verify under the device key.
    #[error("login signature does not verify under the device key")]
    BadSignature,
}

/// Writes `LOGIN_DOMAIN_TAG ‖ client_id ‖ unix_seconds` into `buf`; `None` if it does not fit.
fn login_message<'a>(
    client_id: &[u8],
    unix_seconds: u64,
    buf: &'a mut [u8; MAX_LOGIN_MESSAGE_LEN],
) -> Option<&'a [u8]> {
    let tag_end = LOGIN_DOMAIN_TAG.len();
    let id_end = tag_end.checked_add(client_id.len())?;
    let end = id_end.checked_add(8)?;
    buf.get_mut(..tag_end)?.copy_from_slice(LOGIN_DOMAIN_TAG);
    buf.get_mut(tag_end..id_end)?.copy_from_slice(client_id);
    buf.get_mut(id_end..end)?
        .copy_from_slice(&unix_seconds.to_be_bytes());
    buf.get(..end)
}

/// The 72-byte login token of `key` for `client_id` at `unix_seconds`; `None` when the client
/// id is longer than [`MAX_LOGIN_CLIENT_ID_LEN`] bytes. Allocation-free.
pub fn login_token_bytes(
    key: &DeviceKey,
    client_id: &str,
    unix_seconds: u64,
) -> Option<[u8; LOGIN_TOKEN_LEN]> {
    let mut buf = [0u8; MAX_LOGIN_MESSAGE_LEN];
    let msg = login_message(client_id.as_bytes(), unix_seconds, &mut buf)?;
    let signature = key.sign_raw(msg);
    let mut token = [0u8; LOGIN_TOKEN_LEN];
    token[..8].copy_from_slice(&unix_seconds.to_be_bytes());
    token[8..].copy_from_slice(&signature);
    Some(token)
}

/// The login token's lower-case hex (the MQTT password) as ASCII bytes; `None` as for
/// [`login_token_bytes`]. Allocation-free; `core::str::from_utf8` turns it into a `&str`.
pub fn login_token_ascii(
    key: &DeviceKey,
    client_id: &str,
    unix_seconds: u64,
) -> Option<[u8; LOGIN_TOKEN_HEX_LEN]> {
    let token = login_token_bytes(key, client_id, unix_seconds)?;
    let mut out = [0u8; LOGIN_TOKEN_HEX_LEN];
    for (pair, byte) in out.chunks_exact_mut(2).zip(token) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    Some(out)
}

/// The MQTT password for `client_id` at `unix_seconds`: the login token in lower-case hex
/// (144 characters). Client ids longer than [`MAX_LOGIN_CLIENT_ID_LEN`] bytes cannot log in
/// to a groundtruth broker; for them this returns an empty string.
#[cfg(feature = "std")]
pub fn login_token(key: &DeviceKey, client_id: &str, unix_seconds: u64) -> String {
    login_token_ascii(key, client_id, unix_seconds)
        .and_then(|ascii| core::str::from_utf8(&ascii).ok().map(str::to_owned))
        .unwrap_or_default()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Whether `s` is exactly the lower-case hex of `id`.
fn is_hex_of(s: &[u8], id: &DeviceId) -> bool {
    s.len() == LOGIN_CLIENT_ID_LEN
        && s.chunks_exact(2).zip(id.0).all(|(pair, byte)| {
            pair[0] == HEX[usize::from(byte >> 4)] && pair[1] == HEX[usize::from(byte & 0x0f)]
        })
}

/// Checks a device's MQTT login (PROTOCOL.md, "MQTT session"), in this order:
///
/// 1. `client_id` is `device_public_key` in lower-case hex ([`LoginError::ClientIdMismatch`]);
/// 2. `username == client_id` ([`LoginError::UsernameMismatch`]);
/// 3. `password` is 144 lower-case hex characters ([`LoginError::TokenLength`],
///    [`LoginError::TokenNotHex`]);
/// 4. the token's time `t` satisfies `now_unix − max_skew_secs ≤ t ≤ now_unix + max_skew_secs`
///    ([`LoginError::Stale`], [`LoginError::Future`]); [`DEFAULT_LOGIN_SKEW_SECS`] is 300;
/// 5. the key is not weak ([`LoginError::WeakKey`]) and the signature over
///    `LOGIN_DOMAIN_TAG ‖ client_id ‖ t` verifies under it with the ZIP-215 rule
///    ([`LoginError::BadSignature`]).
///
/// The caller looks up `device_public_key` from the client id (e.g. the registry) and refuses
/// unknown devices itself. Pure: no clock, no allocation.
pub fn verify_login(
    device_public_key: &DeviceId,
    client_id: &str,
    username: &str,
    password: &str,
    now_unix: u64,
    max_skew_secs: u64,
) -> Result<(), LoginError> {
    if !is_hex_of(client_id.as_bytes(), device_public_key) {
        return Err(LoginError::ClientIdMismatch);
    }
    if username != client_id {
        return Err(LoginError::UsernameMismatch);
    }
    let password = password.as_bytes();
    if password.len() != LOGIN_TOKEN_HEX_LEN {
        return Err(LoginError::TokenLength {
            got: password.len(),
        });
    }
    let mut token = [0u8; LOGIN_TOKEN_LEN];
    for (byte, pair) in token.iter_mut().zip(password.chunks_exact(2)) {
        let hi = hex_value(pair[0]).ok_or(LoginError::TokenNotHex)?;
        let lo = hex_value(pair[1]).ok_or(LoginError::TokenNotHex)?;
        *byte = (hi << 4) | lo;
    }
    let mut time = [0u8; 8];
    time.copy_from_slice(&token[..8]);
    let issued = u64::from_be_bytes(time);
    if issued < now_unix.saturating_sub(max_skew_secs) {
        return Err(LoginError::Stale {
            issued,
            now: now_unix,
        });
    }
    if issued > now_unix.saturating_add(max_skew_secs) {
        return Err(LoginError::Future {
            issued,
            now: now_unix,
        });
    }
    if device_public_key.is_weak() {
        return Err(LoginError::WeakKey);
    }
    let vk = ed25519_consensus::VerificationKey::try_from(device_public_key.0)
        .map_err(|_| LoginError::WeakKey)?;
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&token[8..]);
    let mut buf = [0u8; MAX_LOGIN_MESSAGE_LEN];
    let msg = login_message(client_id.as_bytes(), issued, &mut buf)
        .ok_or(LoginError::ClientIdMismatch)?;
    vk.verify(&ed25519_consensus::Signature::from(signature), msg)
        .map_err(|_| LoginError::BadSignature)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_600;

    fn key(n: u8) -> DeviceKey {
        DeviceKey::from_seed(&[n; 32])
    }

    fn id_hex(k: &DeviceKey) -> String {
        k.device_id().to_string()
    }

    fn check(k: &DeviceKey, client: &str, password: &str, now: u64) -> Result<(), LoginError> {
        verify_login(
            &k.device_id(),
            client,
            client,
            password,
            now,
            DEFAULT_LOGIN_SKEW_SECS,
        )
    }

    #[test]
    fn valid_token_verifies_at_the_window_edges() {
        let k = key(1);
        let c = id_hex(&k);
        let t = login_token(&k, &c, NOW);
        assert_eq!(t.len(), LOGIN_TOKEN_HEX_LEN);
        assert_eq!(check(&k, &c, &t, NOW), Ok(()));
        assert_eq!(check(&k, &c, &t, NOW + 300), Ok(()));
        assert_eq!(check(&k, &c, &t, NOW - 300), Ok(()));
        // The token starts with the time, big-endian.
        assert_eq!(&t[..16], &hex::encode(NOW.to_be_bytes()));
        // Deterministic, and the no_std forms agree.
        assert_eq!(login_token(&k, &c, NOW), t);
        let ascii = login_token_ascii(&k, &c, NOW).unwrap();
        assert_eq!(core::str::from_utf8(&ascii).unwrap(), t);
        assert_eq!(hex::encode(login_token_bytes(&k, &c, NOW).unwrap()), t);
    }

    #[test]
    fn wrong_key_is_a_bad_signature() {
        let (a, b) = (key(1), key(2));
        // B signs for A's client id; the broker checks under A's registered key.
        let c = id_hex(&a);
        let t = login_token(&b, &c, NOW);
        assert_eq!(check(&a, &c, &t, NOW), Err(LoginError::BadSignature));
    }

    #[test]
    fn another_devices_token_under_my_client_id_is_refused() {
        let (a, b) = (key(1), key(2));
        let b_token = login_token(&b, &id_hex(&b), NOW);
        // B's own valid token, presented under A's client id and username.
        assert_eq!(
            check(&a, &id_hex(&a), &b_token, NOW),
            Err(LoginError::BadSignature)
        );
        // Or under B's client id while claiming to be A.
        assert_eq!(
            check(&a, &id_hex(&b), &b_token, NOW),
            Err(LoginError::ClientIdMismatch)
        );
    }

    #[test]
    fn stale_and_future_tokens_are_refused() {
        let k = key(1);
        let c = id_hex(&k);
        let t = login_token(&k, &c, NOW);
        assert_eq!(
            check(&k, &c, &t, NOW + 301),
            Err(LoginError::Stale {
                issued: NOW,
                now: NOW + 301
            })
        );
        assert_eq!(
            check(&k, &c, &t, NOW - 301),
            Err(LoginError::Future {
                issued: NOW,
                now: NOW - 301
            })
        );
        // The window is the caller's: zero skew accepts only the exact second.
        assert_eq!(verify_login(&k.device_id(), &c, &c, &t, NOW, 0), Ok(()));
        assert!(verify_login(&k.device_id(), &c, &c, &t, NOW + 1, 0).is_err());
        // No overflow at the ends of the clock.
        let t0 = login_token(&k, &c, 0);
        assert_eq!(check(&k, &c, &t0, 0), Ok(()));
        let tmax = login_token(&k, &c, u64::MAX);
        assert_eq!(check(&k, &c, &tmax, u64::MAX), Ok(()));
        assert!(matches!(
            check(&k, &c, &tmax, 0),
            Err(LoginError::Future { .. })
        ));
    }

    #[test]
    fn changed_time_breaks_the_signature() {
        let k = key(1);
        let c = id_hex(&k);
        let t = login_token(&k, &c, NOW);
        let mut forged = hex::encode((NOW + 1).to_be_bytes());
        forged.push_str(&t[16..]);
        assert_eq!(check(&k, &c, &forged, NOW), Err(LoginError::BadSignature));
    }

    #[test]
    fn malformed_passwords_are_refused() {
        let k = key(1);
        let c = id_hex(&k);
        let t = login_token(&k, &c, NOW);
        assert_eq!(
            check(&k, &c, &t.to_uppercase(), NOW),
            Err(LoginError::TokenNotHex)
        );
        let mut bad = t.clone();
        bad.replace_range(100..101, "g");
        assert_eq!(check(&k, &c, &bad, NOW), Err(LoginError::TokenNotHex));
        // 144 bytes, but a multi-byte character: not hex, no panic on a char boundary.
        let mut uni = t[..142].to_string();
        uni.push('é');
        assert_eq!(uni.len(), 144);
        assert_eq!(check(&k, &c, &uni, NOW), Err(LoginError::TokenNotHex));
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let k = key(1);
        let c = id_hex(&k);
        let t = login_token(&k, &c, NOW);
        for len in [0, 1, 16, 142, 143] {
            assert_eq!(
                check(&k, &c, &t[..len], NOW),
                Err(LoginError::TokenLength { got: len }),
                "{len}"
            );
        }
        let long = format!("{t}00");
        assert_eq!(
            check(&k, &c, &long, NOW),
            Err(LoginError::TokenLength { got: 146 })
        );
        // Client ids: upper-case, truncated, extended, empty.
        let id = k.device_id();
        let tok = |cid: &str| login_token(&k, cid, NOW);
        for cid in [
            c.to_uppercase(),
            c[..63].to_string(),
            format!("{c}0"),
            String::new(),
        ] {
            assert_eq!(
                verify_login(&id, &cid, &cid, &tok(&cid), NOW, 300),
                Err(LoginError::ClientIdMismatch),
                "{cid:?}"
            );
        }
        // Username differing from the client id.
        assert_eq!(
            verify_login(&id, &c, "validator:x", &t, NOW, 300),
            Err(LoginError::UsernameMismatch)
        );
        // A client id beyond the signing bound yields no token.
        assert!(login_token_bytes(&k, &"a".repeat(MAX_LOGIN_CLIENT_ID_LEN + 1), NOW).is_none());
        assert_eq!(
            login_token(&k, &"a".repeat(MAX_LOGIN_CLIENT_ID_LEN + 1), NOW),
            ""
        );
    }

    #[test]
    fn weak_key_is_refused_even_with_a_trivially_valid_signature() {
        // The identity point as key, R = identity and s = 0 satisfy the equation for any
        // message.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let id = DeviceId(identity);
        let c = id.to_string();
        let mut token = [0u8; LOGIN_TOKEN_LEN];
        token[..8].copy_from_slice(&NOW.to_be_bytes());
        token[8] = 1;
        let t = hex::encode(token);
        assert_eq!(
            verify_login(&id, &c, &c, &t, NOW, 300),
            Err(LoginError::WeakKey)
        );
    }

    #[test]
    fn tokens_are_domain_separated_from_readings() {
        // A login signature is not a signature over the same bytes without the tag.
        let k = key(1);
        let c = id_hex(&k);
        let mut msg = c.as_bytes().to_vec();
        msg.extend_from_slice(&NOW.to_be_bytes());
        let untagged = k.sign_raw(&msg);
        let mut token = NOW.to_be_bytes().to_vec();
        token.extend_from_slice(&untagged);
        assert_eq!(
            check(&k, &c, &hex::encode(token), NOW),
            Err(LoginError::BadSignature)
        );
    }
}
