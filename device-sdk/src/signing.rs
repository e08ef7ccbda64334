//! Signing and the one verification rule (PROTOCOL.md, "Signatures").
//!
//! Every path (single, batch, evidence re-checked by the ledger) applies ZIP-215 through
//! `ed25519-consensus`, whose batch and single verification accept exactly the same
//! signatures. ed25519-dalek's own `verify_batch` is randomised and accepts some signatures
//! that its `verify_strict` rejects, so two validators could disagree; we do not use it.

use crate::error::{Error, Result};
use crate::reading::{DeviceId, Reading, ReadingKind};

/// Domain-separation tag prefixed to the reading bytes in the signed message.
pub const DOMAIN_TAG: &[u8] = b"groundtruth/v1/reading\0";

/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

const MAX_READING_LEN: usize = max3(
    ReadingKind::Energy.reading_len(),
    ReadingKind::Gpu.reading_len(),
    ReadingKind::Storage.reading_len(),
);

const fn max3(a: usize, b: usize, c: usize) -> usize {
    let ab = if a > b { a } else { b };
    if ab > c {
        ab
    } else {
        c
    }
}

/// Largest frame (reading bytes followed by the signature) any kind produces.
pub const MAX_FRAME_LEN: usize = MAX_READING_LEN + SIGNATURE_LEN;

const MAX_MESSAGE_LEN: usize = DOMAIN_TAG.len() + MAX_READING_LEN;

/// Writes the signed message (tag ‖ reading bytes) into a stack buffer.
fn signed_message(reading: &Reading, buf: &mut [u8; MAX_MESSAGE_LEN]) -> usize {
    buf[..DOMAIN_TAG.len()].copy_from_slice(DOMAIN_TAG);
    // The buffer holds the largest reading, so encoding cannot fail.
    let n = reading
        .encode_into(&mut buf[DOMAIN_TAG.len()..])
        .unwrap_or(0);
    DOMAIN_TAG.len() + n
}

/// A device's signing key. Its `Debug` output never shows the secret.
pub struct DeviceKey(ed25519_dalek::SigningKey);

impl DeviceKey {
    /// The key for a 32-byte secret seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// A fresh key from a cryptographic random number generator.
    pub fn generate<R: rand_core::CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(&seed)
    }

    /// The secret seed; handle with care (write it only to owner-only files).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The device id (public key).
    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.0.verifying_key().to_bytes())
    }

    /// Signs arbitrary bytes (RFC 8032). Crate-internal: every message a device signs carries
    /// its own domain tag, added by the caller.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        use ed25519_dalek::Signer;
        self.0.sign(message).to_bytes()
    }

    /// Signs a reading. The reading's device id should be this key's.
    pub fn sign(&self, reading: Reading) -> SignedReading {
        let mut msg = [0u8; MAX_MESSAGE_LEN];
        let n = signed_message(&reading, &mut msg);
        let signature = self.sign_raw(&msg[..n]);
        SignedReading { reading, signature }
    }
}

impl core::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DeviceKey({:?}, secret redacted)", self.device_id())
    }
}

impl DeviceId {
    /// True when the key has small order (a "weak" key): signatures under it prove nothing,
    /// so such keys must never be registered.
    pub fn is_weak(&self) -> bool {
        match ed25519_dalek::VerifyingKey::from_bytes(&self.0) {
            Ok(vk) => vk.is_weak(),
            Err(_) => true,
        }
    }

    /// True when the id is the canonical encoding of a curve point: `y < p`, and the sign bit
    /// clear when `x = 0` (no "negative zero"). Every key [`DeviceKey`] derives is canonical.
    /// ZIP-215 verification accepts non-canonical encodings, so two ids could name one point;
    /// a registrar should refuse non-canonical ids (PROTOCOL.md §1).
    pub fn is_canonical(&self) -> bool {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .is_ok_and(|vk| vk.to_edwards().compress().to_bytes() == self.0)
    }
}

/// A reading with its device's signature: what travels on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedReading {
    /// The signed reading.
    pub reading: Reading,
    /// ed25519 signature over `DOMAIN_TAG ‖ reading bytes`.
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedReading {
    /// Length of this frame on the wire.
    pub fn frame_len(&self) -> usize {
        self.reading.encoded_len() + SIGNATURE_LEN
    }

    /// Writes the frame (reading bytes ‖ signature) into `buf`.
    pub fn encode_frame(&self, buf: &mut [u8]) -> Result<usize> {
        let needed = self.frame_len();
        if buf.len() < needed {
            return Err(Error::BufferTooSmall {
                needed,
                got: buf.len(),
            });
        }
        let n = self.reading.encode_into(buf)?;
        buf[n..n + SIGNATURE_LEN].copy_from_slice(&self.signature);
        Ok(n + SIGNATURE_LEN)
    }

    /// The frame as a vector.
    #[cfg(feature = "std")]
    pub fn to_frame(&self) -> Vec<u8> {
        let mut buf = vec![0u8; self.frame_len()];
        let n = self.encode_frame(&mut buf).unwrap_or(0);
        buf.truncate(n);
        buf
    }

    /// Decodes a frame; does not check the signature.
    pub fn decode_frame(frame: &[u8]) -> Result<Self> {
        if frame.len() < SIGNATURE_LEN + 2 {
            return Err(Error::Truncated(frame.len()));
        }
        let split = frame.len() - SIGNATURE_LEN;
        let reading = Reading::decode(&frame[..split])?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&frame[split..]);
        Ok(Self { reading, signature })
    }

    /// Checks the signature under the reading's device id (ZIP-215 rule).
    pub fn verify(&self) -> Result<()> {
        let vk = ed25519_consensus::VerificationKey::try_from(self.reading.device.0)
            .map_err(|_| Error::BadDeviceKey)?;
        let mut msg = [0u8; MAX_MESSAGE_LEN];
        let n = signed_message(&self.reading, &mut msg);
        vk.verify(
            &ed25519_consensus::Signature::from(self.signature),
            &msg[..n],
        )
        .map_err(|_| Error::BadSignature)
    }
}

/// Verifies many signed readings at once (ZIP-215, same rule as [`SignedReading::verify`]).
///
/// Returns one flag per entry. When the whole batch verifies this costs one multiscalar
/// multiplication; when it fails each entry is checked on its own to find the bad ones.
#[cfg(feature = "std")]
pub fn verify_batch<R: rand_core::CryptoRngCore>(items: &[SignedReading], rng: R) -> Vec<bool> {
    let mut verifier = ed25519_consensus::batch::Verifier::new();
    let mut msg = [0u8; MAX_MESSAGE_LEN];
    for item in items {
        let n = signed_message(&item.reading, &mut msg);
        let vk = ed25519_consensus::VerificationKeyBytes::from(item.reading.device.0);
        verifier.queue((
            vk,
            ed25519_consensus::Signature::from(item.signature),
            &msg[..n],
        ));
    }
    if verifier.verify(rng).is_ok() {
        return vec![true; items.len()];
    }
    items.iter().map(|i| i.verify().is_ok()).collect()
}
