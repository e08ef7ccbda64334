//! Simulated devices and what they publish, step by step, with fault injection.
//!
//! Everything here is deterministic in the fleet seed: the same config produces the same keys,
//! readings, faults and therefore the same expected outcome at a validator. That is what lets
//! tests assert exact accepted and rejected counts.

use crate::solar;
use groundtruth_device_sdk::{
    topics, DeviceId, DeviceKey, EnergyReading, GpuReading, Reading, ReadingBody, ReadingKind,
    SignedReading, StorageHeartbeat,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Kinds of misbehaviour a simulated device can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Signs a reading beyond its registered capacity.
    Inflate,
    /// Publishes an earlier, already accepted frame again.
    Replay,
    /// Signs two different readings with one sequence number.
    Equivocate,
    /// Publishes bytes that are not a frame.
    Garbage,
    /// Goes offline for a while, buffers readings, and delivers them late, in order.
    Offline,
    /// Someone else publishes a reading in the device's name with a wrong key.
    Forge,
}

impl FaultKind {
    /// Every fault kind.
    pub const ALL: [FaultKind; 6] = [
        Self::Inflate,
        Self::Replay,
        Self::Equivocate,
        Self::Garbage,
        Self::Offline,
        Self::Forge,
    ];
}

/// What a validator should do with a message, as the simulator knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Accepted and stored.
    Accepted,
    /// Rejected: beyond capacity (kept on record as authentic but implausible).
    Implausible,
    /// Rejected: an identical reading is already stored.
    Duplicate,
    /// Rejected: a different reading with the same seq is stored.
    Equivocation,
    /// Rejected: not a frame.
    Malformed,
    /// Rejected: signature does not verify.
    BadSignature,
    /// Rejected: device not registered.
    UnknownDevice,
}

impl Expect {
    /// Every outcome.
    pub const ALL: [Expect; 7] = [
        Self::Accepted,
        Self::Implausible,
        Self::Duplicate,
        Self::Equivocation,
        Self::Malformed,
        Self::BadSignature,
        Self::UnknownDevice,
    ];

    /// The validator's metric label for this outcome (`accepted` or a rejection reason).
    pub fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Implausible => "implausible",
            Self::Duplicate => "duplicate",
            Self::Equivocation => "equivocation",
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::UnknownDevice => "unknown_device",
        }
    }
}

/// Fleet composition and behaviour.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// Seed for keys, weather and faults.
    pub seed: u64,
    /// Solar meters.
    pub energy_devices: u32,
    /// GPU agents.
    pub gpu_devices: u32,
    /// Storage providers.
    pub storage_devices: u32,
    /// Devices that are not in the genesis file (their readings must be rejected).
    pub unknown_devices: u32,
    /// Interval length, seconds.
    pub interval_s: u32,
    /// Simulated start time, Unix seconds.
    pub start_unix_s: u64,
    /// Fraction of registered devices given each fault (each faulty device has one fault).
    pub faulty_fraction: f64,
    /// Probability per interval that a faulty device shows its fault.
    pub fault_rate: f64,
    /// Which faults to hand out (round robin over faulty devices).
    pub faults: Vec<FaultKind>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            energy_devices: 100,
            gpu_devices: 10,
            storage_devices: 10,
            unknown_devices: 2,
            interval_s: 300,
            start_unix_s: 1_781_913_600, // 2026-06-21T00:00:00Z
            faulty_fraction: 0.2,
            fault_rate: 0.1,
            faults: FaultKind::ALL.to_vec(),
        }
    }
}

/// One simulated device.
#[derive(Debug)]
pub struct SimDevice {
    /// Index in the fleet (stable across runs with the same config).
    pub index: u32,
    /// Signing key.
    pub key: DeviceKey,
    /// Kind of readings.
    pub kind: ReadingKind,
    /// Capacity in the kind's unit: peak W, GPUs, or bytes.
    pub capacity: u64,
    /// Region code.
    pub region: String,
    /// Site latitude and longitude (solar meters).
    pub site: (f64, f64),
    /// Registered in genesis?
    pub registered: bool,
    /// Its fault, if any.
    pub fault: Option<FaultKind>,
    next_seq: u64,
    register_wh: u64,
    cloud: f64,
    data_root: [u8; 32],
    last_accepted: Option<Vec<u8>>,
    offline_for: u32,
    held: Vec<Message>,
}

/// A message the simulator publishes, with what the validator should make of it.
#[derive(Debug, Clone)]
pub struct Message {
    /// Index of the publishing device.
    pub device_index: u32,
    /// MQTT topic.
    pub topic: String,
    /// MQTT payload.
    pub payload: Vec<u8>,
    /// Expected outcome.
    pub expect: Expect,
    /// (device, seq) for readings that decode.
    pub key: Option<(DeviceId, u64)>,
}

/// A registered device as written to the genesis file.
#[derive(Debug, Clone, Serialize)]
pub struct GenesisDevice {
    /// Public key, hex.
    pub id: String,
    /// `energy`, `gpu` or `storage`.
    pub kind: String,
    /// Capacity in the kind's unit.
    pub capacity: u64,
    /// Region.
    pub region: String,
    /// Owner (empty in the simulator).
    pub owner: String,
}

const REGIONS: [(&str, f64, f64); 4] = [
    ("DE-BY", 48.1, 11.6),
    ("ES-AN", 37.4, -5.9),
    ("US-CA", 36.8, -119.4),
    ("AU-NSW", -33.9, 151.2),
];

/// A deterministic fleet.
#[derive(Debug)]
pub struct Fleet {
    /// Its configuration.
    pub config: FleetConfig,
    /// Its devices, registered first, unknown last.
    pub devices: Vec<SimDevice>,
    rng: ChaCha20Rng,
    step: u64,
    /// Intervals the fleet's clock is ahead of its step count: the time it was switched off.
    clock_offset: u64,
}

impl Fleet {
    /// Creates the fleet: keys, capacities, sites and fault assignments from the seed.
    pub fn new(config: FleetConfig) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let mut devices = Vec::new();
        let groups = [
            (ReadingKind::Energy, config.energy_devices, true),
            (ReadingKind::Gpu, config.gpu_devices, true),
            (ReadingKind::Storage, config.storage_devices, true),
            (ReadingKind::Energy, config.unknown_devices, false),
        ];
        let registered_total = config.energy_devices + config.gpu_devices + config.storage_devices;
        let faulty_total = (f64::from(registered_total) * config.faulty_fraction).round() as u32;
        let mut index = 0u32;
        for (kind, count, registered) in groups {
            for _ in 0..count {
                let key = DeviceKey::generate(&mut rng);
                let capacity = match kind {
                    ReadingKind::Energy => rng.gen_range(3..=12) * 1000,
                    ReadingKind::Gpu => rng.gen_range(1..=8),
                    ReadingKind::Storage => rng.gen_range(1u64..=16) << 40,
                };
                let (region, lat, lon) = REGIONS[index as usize % REGIONS.len()];
                let mut data_root = [0u8; 32];
                rng.fill(&mut data_root);
                // Spread faults evenly over the registered fleet, round robin over kinds.
                let fault = if registered && !config.faults.is_empty() && faulty_total > 0 {
                    let stride = (registered_total / faulty_total).max(1);
                    let slot = index / stride;
                    (index.is_multiple_of(stride) && slot < faulty_total)
                        .then(|| config.faults[slot as usize % config.faults.len()])
                } else {
                    None
                };
                devices.push(SimDevice {
                    index,
                    key,
                    kind,
                    capacity,
                    region: region.to_string(),
                    site: (
                        lat + rng.gen_range(-1.0..1.0),
                        lon + rng.gen_range(-1.0..1.0),
                    ),
                    registered,
                    fault,
                    next_seq: 0,
                    register_wh: rng.gen_range(0..1_000_000),
                    cloud: rng.gen_range(0.0..1.0),
                    data_root,
                    last_accepted: None,
                    offline_for: 0,
                    held: Vec::new(),
                });
                index += 1;
            }
        }
        Self {
            config,
            devices,
            rng,
            step: 0,
            clock_offset: 0,
        }
    }

    /// The registered devices, for a genesis file.
    pub fn genesis_devices(&self) -> Vec<GenesisDevice> {
        self.devices
            .iter()
            .filter(|d| d.registered)
            .map(|d| GenesisDevice {
                id: d.key.device_id().to_string(),
                kind: d.kind.name().to_string(),
                capacity: d.capacity,
                region: d.region.clone(),
                owner: String::new(),
            })
            .collect()
    }

    /// The `[[devices]]` section of a genesis file, as TOML text.
    pub fn genesis_toml(&self) -> String {
        let mut out = String::from("# Devices of the simulated fleet (groundtruth sim genesis).\n");
        for d in self.genesis_devices() {
            out.push_str(&format!(
                "\n[[devices]]\nid = \"{}\"\nkind = \"{}\"\ncapacity = {}\nregion = \"{}\"\n",
                d.id, d.kind, d.capacity, d.region
            ));
        }
        out
    }

    /// Number of steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// The interval the next [`Self::step`] covers: `[start + i·interval, start + (i+1)·interval)`.
    pub fn next_interval(&self) -> u64 {
        self.step.saturating_add(self.clock_offset)
    }

    /// Moves the fleet's clock on to interval `interval`, as a fleet switched off meanwhile: the
    /// next step covers that interval, and every device continues with its next sequence number
    /// and its register where it stopped (a meter that is off meters nothing), so validators
    /// see a time gap and no sequence gap. Returns false (and changes nothing) if `interval`
    /// is not ahead of [`Self::next_interval`].
    pub fn jump_clock_to(&mut self, interval: u64) -> bool {
        if interval <= self.next_interval() {
            return false;
        }
        self.clock_offset = interval - self.step;
        true
    }

    /// Advances one interval and returns what every device publishes in it, in publish order.
    /// Held (offline) readings are released in the step the device comes back.
    pub fn step(&mut self) -> Vec<Message> {
        let start =
            self.config.start_unix_s + self.next_interval() * u64::from(self.config.interval_s);
        let interval = self.config.interval_s;
        self.step += 1;
        let mut out = Vec::new();
        for d in &mut self.devices {
            let triggered =
                d.fault.is_some() && self.rng.gen_bool(self.config.fault_rate.clamp(0.0, 1.0));
            d.cloud = (d.cloud + self.rng.gen_range(-0.1..0.1)).clamp(0.0, 1.0);
            let util: f64 = self.rng.gen_range(0.3..1.0);
            let fault = if triggered { d.fault } else { None };
            let mut msgs = Vec::new();

            if fault == Some(FaultKind::Forge) && d.registered {
                let forger = DeviceKey::generate(&mut self.rng);
                let body = honest_body(d, start, interval, util, false);
                let forged = forger.sign(Reading {
                    device: d.key.device_id(),
                    seq: d.next_seq,
                    timestamp_ms: (start + u64::from(interval)) * 1000,
                    body,
                });
                msgs.push(d.message(
                    forged.to_frame(),
                    Expect::BadSignature,
                    Some((d.key.device_id(), d.next_seq)),
                ));
            }
            if fault == Some(FaultKind::Garbage) {
                let len = self.rng.gen_range(1..200);
                let mut junk: Vec<u8> = (0..len).map(|_| self.rng.gen()).collect();
                junk[0] = 0xEE; // never a valid version byte
                msgs.push(d.message(junk, Expect::Malformed, None));
            }

            let inflate = fault == Some(FaultKind::Inflate);
            let body = honest_body(d, start, interval, util, inflate);
            let signed = d.sign_next(body, start, interval);
            let expect = if !d.registered {
                Expect::UnknownDevice
            } else if inflate {
                Expect::Implausible
            } else {
                Expect::Accepted
            };
            let frame = signed.to_frame();
            let key = Some((d.key.device_id(), signed.reading.seq));
            let replay_frame = d.last_accepted.clone();
            if expect == Expect::Accepted {
                d.last_accepted = Some(frame.clone());
            }
            msgs.push(d.message(frame, expect, key));

            if fault == Some(FaultKind::Equivocate) && expect == Expect::Accepted {
                let mut twin = signed.reading;
                tweak(&mut twin.body);
                msgs.push(d.message(d.key.sign(twin).to_frame(), Expect::Equivocation, key));
            }
            if fault == Some(FaultKind::Replay) {
                if let Some(old) = replay_frame {
                    msgs.push(d.message(old, Expect::Duplicate, None));
                }
            }

            if fault == Some(FaultKind::Offline) && d.offline_for == 0 {
                d.offline_for = self.rng.gen_range(3..12);
            }
            if d.offline_for > 0 {
                d.offline_for -= 1;
                d.held.append(&mut msgs);
                if d.offline_for == 0 {
                    out.append(&mut d.held);
                }
            } else {
                out.append(&mut msgs);
            }
        }
        out
    }

    /// Releases every reading still held by offline devices (call once at the end of a run).
    pub fn release_held(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        for d in &mut self.devices {
            d.offline_for = 0;
            out.append(&mut d.held);
        }
        out
    }
}

impl SimDevice {
    fn message(&self, payload: Vec<u8>, expect: Expect, key: Option<(DeviceId, u64)>) -> Message {
        Message {
            device_index: self.index,
            topic: topics::readings_topic(&self.key.device_id()),
            payload,
            expect,
            key,
        }
    }

    fn sign_next(&mut self, body: ReadingBody, start: u64, interval: u32) -> SignedReading {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let ReadingBody::Energy(e) = body {
            self.register_wh = e.register_wh;
        }
        self.key.sign(Reading {
            device: self.key.device_id(),
            seq,
            timestamp_ms: (start + u64::from(interval)) * 1000,
            body,
        })
    }
}

fn honest_body(d: &SimDevice, start: u64, interval: u32, util: f64, inflate: bool) -> ReadingBody {
    match d.kind {
        ReadingKind::Energy => {
            let cap_wh = d.capacity * u64::from(interval) / 3600;
            let wh = if inflate {
                cap_wh * 2 + 1
            } else {
                solar::interval_energy_wh(d.capacity, d.site.0, d.site.1, start, interval, d.cloud)
            };
            ReadingBody::Energy(EnergyReading {
                interval_start_s: start,
                interval_len_s: interval,
                energy_wh: wh,
                register_wh: d.register_wh + wh,
            })
        }
        ReadingKind::Gpu => {
            let full_ms = d.capacity * u64::from(interval) * 1000;
            let gpu_ms = if inflate {
                full_ms * 2
            } else {
                (full_ms as f64 * util) as u64
            };
            ReadingBody::Gpu(GpuReading {
                interval_start_s: start,
                interval_len_s: interval,
                gpu_ms,
                utilisation_bp: (util * 10_000.0) as u16,
                energy_wh: (d.capacity as f64 * 700.0 * util * f64::from(interval) / 3600.0) as u64,
            })
        }
        ReadingKind::Storage => ReadingBody::Storage(StorageHeartbeat {
            data_root: d.data_root,
            capacity_bytes: if inflate { d.capacity * 2 } else { d.capacity },
        }),
    }
}

/// Changes a body slightly (for equivocation).
fn tweak(body: &mut ReadingBody) {
    match body {
        ReadingBody::Energy(e) => {
            e.energy_wh = e.energy_wh.saturating_sub(1);
            e.register_wh = e.register_wh.saturating_sub(1);
        }
        ReadingBody::Gpu(g) => g.gpu_ms = g.gpu_ms.saturating_sub(1),
        ReadingBody::Storage(s) => s.capacity_bytes = s.capacity_bytes.saturating_sub(1),
    }
}

/// Expected outcome counts of a set of messages, by label.
pub fn expected_counts<'a>(
    messages: impl IntoIterator<Item = &'a Message>,
) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for m in messages {
        *counts.entry(m.expect.label()).or_insert(0) += 1;
    }
    counts
}

/// One device's metered output in a set of messages: what it signed, and what of it a validator
/// accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeteredTotal {
    /// `Energy` (Wh) or `Gpu` (GPU-milliseconds).
    pub kind: ReadingKind,
    /// Sum over the readings a validator must accept (inflated, implausible readings excluded).
    pub accepted: u64,
    /// Sum over every reading the device itself signed and published once (accepted or
    /// implausible; equivocation twins, replays and forgeries are not its claims).
    pub claimed: u64,
}

/// Per-device metered totals (energy Wh, GPU-ms) of a set of messages, by device; storage
/// heartbeats and unregistered devices are left out.
pub fn metered_totals<'a>(
    messages: impl IntoIterator<Item = &'a Message>,
) -> BTreeMap<DeviceId, MeteredTotal> {
    let mut out: BTreeMap<DeviceId, MeteredTotal> = BTreeMap::new();
    for m in messages {
        if !matches!(m.expect, Expect::Accepted | Expect::Implausible) {
            continue;
        }
        let Ok(signed) = SignedReading::decode_frame(&m.payload) else {
            continue;
        };
        let (kind, value) = match signed.reading.body {
            ReadingBody::Energy(e) => (ReadingKind::Energy, e.energy_wh),
            ReadingBody::Gpu(g) => (ReadingKind::Gpu, g.gpu_ms),
            ReadingBody::Storage(_) => continue,
        };
        let t = out.entry(signed.reading.device).or_insert(MeteredTotal {
            kind,
            accepted: 0,
            claimed: 0,
        });
        t.claimed = t.claimed.saturating_add(value);
        if m.expect == Expect::Accepted {
            t.accepted = t.accepted.saturating_add(value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (device, seq, interval start, energy register, energy) of the energy readings in `msgs`.
    fn energy_seqs(msgs: &[Message]) -> Vec<(DeviceId, u64, u64, u64, u64)> {
        msgs.iter()
            .filter_map(|m| SignedReading::decode_frame(&m.payload).ok())
            .filter_map(|s| match s.reading.body {
                ReadingBody::Energy(e) => Some((
                    s.reading.device,
                    s.reading.seq,
                    e.interval_start_s,
                    e.register_wh,
                    e.energy_wh,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn clock_jump_keeps_seqs_and_registers_contiguous() {
        let config = FleetConfig {
            energy_devices: 4,
            gpu_devices: 1,
            storage_devices: 1,
            unknown_devices: 0,
            faulty_fraction: 0.0,
            interval_s: 10,
            ..FleetConfig::default()
        };
        let start = config.start_unix_s;
        let payloads =
            |msgs: &[Message]| msgs.iter().map(|m| m.payload.clone()).collect::<Vec<_>>();
        let mut fleet = Fleet::new(config.clone());
        let sent_first = fleet.step();
        let before = energy_seqs(&sent_first);
        assert!(!fleet.jump_clock_to(1), "not ahead of the next interval");
        assert!(fleet.jump_clock_to(50));
        assert_eq!(fleet.next_interval(), 50);
        let sent_second = fleet.step();
        let after = energy_seqs(&sent_second);
        assert_eq!(fleet.next_interval(), 51);
        assert_eq!(after.len(), 4);
        for (device, seq, t, register, energy) in &after {
            let (_, prev_seq, _, prev_register, _) = before
                .iter()
                .find(|b| b.0 == *device)
                .copied()
                .expect("same devices");
            assert_eq!(*seq, prev_seq + 1, "no sequence gap");
            assert_eq!(*t, start + 50 * 10, "the interval the clock jumped to");
            assert_eq!(
                *register,
                prev_register + energy,
                "the register continues, as validators check"
            );
        }
        // A replay with the same config and jumps gives the frames that were sent.
        let mut replay = Fleet::new(config);
        assert_eq!(payloads(&replay.step()), payloads(&sent_first));
        replay.jump_clock_to(50);
        assert_eq!(payloads(&replay.step()), payloads(&sent_second));
    }

    #[test]
    fn deterministic_and_every_fault_shows() {
        let config = FleetConfig {
            energy_devices: 30,
            gpu_devices: 6,
            storage_devices: 6,
            faulty_fraction: 0.5,
            fault_rate: 0.5,
            ..Default::default()
        };
        let mut a = Fleet::new(config.clone());
        let mut b = Fleet::new(config);
        let mut msgs = Vec::new();
        for _ in 0..30 {
            let sa = a.step();
            let sb = b.step();
            assert_eq!(
                sa.iter().map(|m| &m.payload).collect::<Vec<_>>(),
                sb.iter().map(|m| &m.payload).collect::<Vec<_>>()
            );
            msgs.extend(sa);
        }
        msgs.extend(a.release_held());
        let counts = expected_counts(&msgs);
        for label in Expect::ALL.map(Expect::label) {
            assert!(
                counts.get(label).copied().unwrap_or(0) > 0,
                "no {label} in {counts:?}"
            );
        }
    }

    #[test]
    fn metered_totals_leave_out_inflated_readings() {
        let config = FleetConfig {
            energy_devices: 4,
            gpu_devices: 4,
            storage_devices: 2,
            unknown_devices: 1,
            faulty_fraction: 0.5,
            fault_rate: 0.5,
            faults: vec![FaultKind::Inflate],
            ..Default::default()
        };
        let mut fleet = Fleet::new(config);
        let mut msgs = Vec::new();
        for _ in 0..20 {
            msgs.extend(fleet.step());
        }
        let totals = metered_totals(&msgs);
        // Registered metered devices only: 4 energy + 4 GPU.
        assert_eq!(totals.len(), 8);
        let mut inflated = 0;
        for (id, t) in &totals {
            let mut accepted = 0u64;
            let mut claimed = 0u64;
            for m in &msgs {
                let Ok(s) = SignedReading::decode_frame(&m.payload) else {
                    continue;
                };
                if s.reading.device != *id {
                    continue;
                }
                let v = match s.reading.body {
                    ReadingBody::Energy(e) => e.energy_wh,
                    ReadingBody::Gpu(g) => g.gpu_ms,
                    ReadingBody::Storage(_) => 0,
                };
                claimed += v;
                if m.expect == Expect::Accepted {
                    accepted += v;
                }
            }
            assert_eq!((t.accepted, t.claimed), (accepted, claimed));
            if t.claimed > t.accepted {
                inflated += 1;
            }
        }
        assert!(inflated > 0, "no inflated device in {totals:?}");
    }

    #[test]
    fn honest_readings_verify_and_registers_continue() {
        let config = FleetConfig {
            faulty_fraction: 0.0,
            unknown_devices: 0,
            energy_devices: 5,
            gpu_devices: 1,
            storage_devices: 1,
            ..Default::default()
        };
        let mut fleet = Fleet::new(config);
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        for _ in 0..50 {
            for m in fleet.step() {
                let s = SignedReading::decode_frame(&m.payload).expect("decodes");
                s.verify().expect("verifies");
                if let ReadingBody::Energy(e) = s.reading.body {
                    if let Some(prev) = last.insert(m.device_index, e.register_wh) {
                        assert_eq!(prev + e.energy_wh, e.register_wh);
                    }
                }
            }
        }
    }
}
