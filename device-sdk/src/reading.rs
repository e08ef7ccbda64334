//! Reading types and their canonical encoding (PROTOCOL.md, "Reading bytes").

use crate::error::{Error, Result};

/// Version byte written first in every reading.
pub const PROTOCOL_VERSION: u8 = 1;

/// Length of the common header: version, kind, device id, seq, timestamp.
pub(crate) const HEADER_LEN: usize = 1 + 1 + 32 + 8 + 8;

/// A device's identity: its ed25519 public key (32 bytes, compressed Edwards y).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub [u8; 32]);

impl DeviceId {
    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DeviceId(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl core::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What kind of device produced a reading; the second byte of every reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReadingKind {
    /// An energy meter's interval reading.
    Energy = 1,
    /// A GPU agent's interval reading.
    Gpu = 2,
    /// A storage provider's heartbeat.
    Storage = 3,
}

impl ReadingKind {
    /// Decodes the kind byte.
    pub fn from_byte(b: u8) -> Result<Self> {
        match b {
            1 => Ok(Self::Energy),
            2 => Ok(Self::Gpu),
            3 => Ok(Self::Storage),
            other => Err(Error::UnknownKind(other)),
        }
    }

    /// Length of this kind's payload after the header.
    pub const fn payload_len(self) -> usize {
        match self {
            Self::Energy => EnergyReading::LEN,
            Self::Gpu => GpuReading::LEN,
            Self::Storage => StorageHeartbeat::LEN,
        }
    }

    /// Length of a whole reading of this kind (header and payload, without signature).
    pub const fn reading_len(self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// Lower-case name, as used in metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Energy => "energy",
            Self::Gpu => "gpu",
            Self::Storage => "storage",
        }
    }
}

/// An energy meter's reading for one interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnergyReading {
    /// Interval start, Unix seconds.
    pub interval_start_s: u64,
    /// Interval length in seconds (300 for 5-minute intervals); never 0.
    pub interval_len_s: u32,
    /// Energy produced in the interval, Wh.
    pub energy_wh: u64,
    /// The meter's cumulative register at the end of the interval, Wh.
    pub register_wh: u64,
}

impl EnergyReading {
    /// Encoded payload length.
    pub const LEN: usize = 8 + 4 + 8 + 8;
}

/// A GPU agent's reading for one interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuReading {
    /// Interval start, Unix seconds.
    pub interval_start_s: u64,
    /// Interval length in seconds; never 0.
    pub interval_len_s: u32,
    /// GPU time delivered in the interval, summed over the agent's GPUs, milliseconds.
    pub gpu_ms: u64,
    /// Mean utilisation over the interval, basis points (0..=10000).
    pub utilisation_bp: u16,
    /// Energy drawn in the interval, Wh.
    pub energy_wh: u64,
}

impl GpuReading {
    /// Encoded payload length.
    pub const LEN: usize = 8 + 4 + 8 + 2 + 8;
}

/// A storage provider's heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageHeartbeat {
    /// Merkle root of the provider's committed data (see the proofs crate).
    pub data_root: [u8; 32],
    /// Capacity the provider offers, bytes.
    pub capacity_bytes: u64,
}

impl StorageHeartbeat {
    /// Encoded payload length.
    pub const LEN: usize = 32 + 8;
}

/// The kind-specific part of a reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadingBody {
    /// Energy meter interval.
    Energy(EnergyReading),
    /// GPU agent interval.
    Gpu(GpuReading),
    /// Storage heartbeat.
    Storage(StorageHeartbeat),
}

impl ReadingBody {
    /// The kind of this body.
    pub fn kind(&self) -> ReadingKind {
        match self {
            Self::Energy(_) => ReadingKind::Energy,
            Self::Gpu(_) => ReadingKind::Gpu,
            Self::Storage(_) => ReadingKind::Storage,
        }
    }
}

/// The envelope every device signs: who, which sequence number, when, and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// The device's public key.
    pub device: DeviceId,
    /// Per-device sequence number, contiguous from 0, never reused.
    pub seq: u64,
    /// The device's clock when it made the reading, Unix milliseconds.
    pub timestamp_ms: u64,
    /// The measurement.
    pub body: ReadingBody,
}

/// Writes big-endian integers and raw bytes into a fixed buffer.
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        // Callers size the buffer from `encoded_len`; this cannot overflow.
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

/// Reads big-endian integers from a slice whose length was checked up front.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.at..self.at + N]);
        self.at += N;
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
}

impl Reading {
    /// Length of this reading's canonical bytes.
    pub fn encoded_len(&self) -> usize {
        self.body.kind().reading_len()
    }

    /// Writes the canonical bytes into `buf`, returning how many were written.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.encoded_len();
        if buf.len() < len {
            return Err(Error::BufferTooSmall {
                needed: len,
                got: buf.len(),
            });
        }
        let mut w = Writer { buf, at: 0 };
        w.put(&[PROTOCOL_VERSION, self.body.kind() as u8]);
        w.put(&self.device.0);
        w.put(&self.seq.to_be_bytes());
        w.put(&self.timestamp_ms.to_be_bytes());
        match &self.body {
            ReadingBody::Energy(e) => {
                w.put(&e.interval_start_s.to_be_bytes());
                w.put(&e.interval_len_s.to_be_bytes());
                w.put(&e.energy_wh.to_be_bytes());
                w.put(&e.register_wh.to_be_bytes());
            }
            ReadingBody::Gpu(g) => {
                w.put(&g.interval_start_s.to_be_bytes());
                w.put(&g.interval_len_s.to_be_bytes());
                w.put(&g.gpu_ms.to_be_bytes());
                w.put(&g.utilisation_bp.to_be_bytes());
                w.put(&g.energy_wh.to_be_bytes());
            }
            ReadingBody::Storage(s) => {
                w.put(&s.data_root);
                w.put(&s.capacity_bytes.to_be_bytes());
            }
        }
        Ok(w.at)
    }

    /// Decodes canonical bytes. The slice must hold exactly one reading: trailing bytes,
    /// unknown versions or kinds, and out-of-range fields are errors, so every reading has
    /// exactly one encoding.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 2 {
            return Err(Error::Truncated(bytes.len()));
        }
        if bytes[0] != PROTOCOL_VERSION {
            return Err(Error::UnsupportedVersion(bytes[0]));
        }
        let kind = ReadingKind::from_byte(bytes[1])?;
        let expected = kind.reading_len();
        if bytes.len() != expected {
            return Err(Error::BadLength {
                expected,
                got: bytes.len(),
            });
        }
        let mut r = Reader { buf: bytes, at: 2 };
        let device = DeviceId(r.take());
        let seq = r.u64();
        let timestamp_ms = r.u64();
        let body = match kind {
            ReadingKind::Energy => {
                let e = EnergyReading {
                    interval_start_s: r.u64(),
                    interval_len_s: r.u32(),
                    energy_wh: r.u64(),
                    register_wh: r.u64(),
                };
                if e.interval_len_s == 0 {
                    return Err(Error::InvalidField {
                        field: "interval_len_s",
                        reason: "must not be 0",
                    });
                }
                ReadingBody::Energy(e)
            }
            ReadingKind::Gpu => {
                let g = GpuReading {
                    interval_start_s: r.u64(),
                    interval_len_s: r.u32(),
                    gpu_ms: r.u64(),
                    utilisation_bp: r.u16(),
                    energy_wh: r.u64(),
                };
                if g.interval_len_s == 0 {
                    return Err(Error::InvalidField {
                        field: "interval_len_s",
                        reason: "must not be 0",
                    });
                }
                if g.utilisation_bp > 10_000 {
                    return Err(Error::InvalidField {
                        field: "utilisation_bp",
                        reason: "above 10000",
                    });
                }
                ReadingBody::Gpu(g)
            }
            ReadingKind::Storage => ReadingBody::Storage(StorageHeartbeat {
                data_root: r.take(),
                capacity_bytes: r.u64(),
            }),
        };
        Ok(Reading {
            device,
            seq,
            timestamp_ms,
            body,
        })
    }
}
