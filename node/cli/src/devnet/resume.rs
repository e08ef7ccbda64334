//! Starting a devnet again on its directory.
//!
//! The simulated fleet is deterministic in its config, so [`PROGRESS_FILE`] keeps only the
//! config, how many intervals were published and when the fleet's clock jumped (each restart).
//! A restart replays the fleet to where it stopped without publishing, which brings every device
//! back to its next sequence number, its register and its pending offline readings, and gives
//! the publisher the last intervals' frames to answer resend requests with. Then, in real time,
//! the clock jumps to the current interval: validators see a time gap (the meters were off) and
//! no sequence gap, and no sequence number is ever signed twice with other content.

use groundtruth_firmware_sim::{Fleet, FleetConfig, Message};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The progress file in a devnet's directory.
pub const PROGRESS_FILE: &str = "fleet-progress.json";

/// Intervals replayed into the publisher's resend history on a restart (the readings in flight
/// when it stopped are among them).
const RECENT_INTERVALS: u64 = 16;

/// The fleet's clock moved on to `to_interval` before step `at_step` (a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockJump {
    /// Steps taken when it jumped.
    pub at_step: u64,
    /// The interval the next step covered.
    pub to_interval: u64,
}

/// What a devnet's fleet has done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetProgress {
    /// The fleet's config (its `start_unix_s` is interval 0: the genesis time of a timed devnet).
    pub fleet: FleetConfig,
    /// Intervals published (acknowledged by the publisher's client; the last may be partly
    /// delivered, so a restart's resend history holds it).
    pub next_step: u64,
    /// Each restart's clock jump, in order.
    pub clock_jumps: Vec<ClockJump>,
}

impl FleetProgress {
    /// The progress kept in `dir`, if any.
    pub fn load(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(PROGRESS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is damaged ({e}); delete the devnet's directory to start over",
                    path.display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    }

    /// Writes it to `dir` atomically (a synced new file renamed over the old one), so a kill at
    /// any moment leaves the old or the new progress, never a torn one.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        let path = dir.join(PROGRESS_FILE);
        let tmp = dir.join(format!("{PROGRESS_FILE}.new"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(self)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Records that the fleet has published its steps so far.
    pub fn published(&mut self, fleet: &Fleet, dir: &Path) -> anyhow::Result<()> {
        self.next_step = fleet.steps_taken();
        self.save(dir)
    }
}

/// A devnet's fleet, new or resumed.
pub struct FleetStart {
    /// The fleet, ready to publish its next step.
    pub fleet: Fleet,
    /// Its progress, to update as it publishes.
    pub progress: FleetProgress,
    /// An earlier devnet in the directory is resumed.
    pub resumed: bool,
    /// The last intervals' messages before the restart, for the publisher's resend history.
    pub recent: Vec<Message>,
}

/// The fleet for `dir`: new with `config`, or the devnet kept there, replayed to where it
/// stopped (refused if it was made with another config, apart from its start time). With
/// `real_time`, its clock then jumps to the interval Unix second `now` is in.
pub fn open(
    dir: &Path,
    config: FleetConfig,
    real_time: bool,
    now: u64,
) -> anyhow::Result<FleetStart> {
    let Some(mut progress) = FleetProgress::load(dir)? else {
        anyhow::ensure!(
            !dir.join("genesis.toml").exists(),
            "{} holds a devnet without {PROGRESS_FILE} (made by an older version), which cannot \
             be resumed: its meters would sign readings again from seq 0. Delete it, or pass \
             another --dir",
            dir.display()
        );
        let progress = FleetProgress {
            fleet: config.clone(),
            next_step: 0,
            clock_jumps: Vec::new(),
        };
        progress.save(dir)?;
        return Ok(FleetStart {
            fleet: Fleet::new(config),
            progress,
            resumed: false,
            recent: Vec::new(),
        });
    };
    let mut asked = config;
    asked.start_unix_s = progress.fleet.start_unix_s;
    anyhow::ensure!(
        serde_json::to_value(&asked)? == serde_json::to_value(&progress.fleet)?,
        "the devnet in {} was started with other fleet options ({}): start it with those, or \
         delete the directory to start over",
        dir.display(),
        serde_json::to_string(&progress.fleet)?
    );
    let mut fleet = Fleet::new(progress.fleet.clone());
    let bar = ProgressBar::new(progress.next_step).with_style(
        ProgressStyle::with_template("  replaying the fleet {bar:30} {pos}/{len} intervals")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut recent = Vec::new();
    let jumps = progress.clock_jumps.clone();
    let jump = |fleet: &mut Fleet| {
        let at = fleet.steps_taken();
        for j in jumps.iter().filter(|j| j.at_step == at) {
            fleet.jump_clock_to(j.to_interval);
        }
    };
    for _ in 0..progress.next_step {
        jump(&mut fleet);
        let msgs = fleet.step();
        if fleet.steps_taken() + RECENT_INTERVALS > progress.next_step {
            recent.extend(msgs);
        }
        bar.inc(1);
    }
    jump(&mut fleet);
    bar.finish_and_clear();
    if real_time {
        let interval = u64::from(progress.fleet.interval_s.max(1));
        let clock = now.saturating_sub(progress.fleet.start_unix_s) / interval;
        if fleet.jump_clock_to(clock) {
            progress.clock_jumps.push(ClockJump {
                at_step: fleet.steps_taken(),
                to_interval: clock,
            });
            progress.save(dir)?;
        }
    }
    Ok(FleetStart {
        fleet,
        progress,
        resumed: true,
        recent,
    })
}

/// Writes `genesis` to `path` for a new devnet; for a resumed one, checks that the kept file is
/// the same genesis (the same options and ledger genesis), and leaves it as it is.
pub fn keep_genesis(path: &Path, genesis: &str, resumed: bool) -> anyhow::Result<()> {
    // A start that failed before writing it (anvil missing, say) left progress but no genesis:
    // nothing ran on it yet.
    if !resumed || !path.exists() {
        std::fs::write(path, genesis)?;
        return Ok(());
    }
    let kept = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the kept {}: {e}", path.display()))?;
    anyhow::ensure!(
        kept == genesis,
        "{} was made with other options (fleet, epoch length or ledger genesis): start the \
         devnet with the options it was first started with, or delete its directory to start \
         over",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use groundtruth_firmware_sim::Expect;

    fn config() -> FleetConfig {
        FleetConfig {
            energy_devices: 6,
            gpu_devices: 2,
            storage_devices: 2,
            unknown_devices: 1,
            interval_s: 10,
            start_unix_s: 1_000,
            faulty_fraction: 0.5,
            fault_rate: 0.5,
            ..FleetConfig::default()
        }
    }

    /// Runs `steps` published steps on the fleet of `dir`, recording progress as the devnet does.
    fn run(dir: &Path, now: u64, steps: u64) -> (FleetStart, Vec<Message>) {
        let mut s = open(dir, config(), true, now).expect("opens");
        let mut sent = Vec::new();
        for _ in 0..steps {
            sent.extend(s.fleet.step());
            s.progress.published(&s.fleet, dir).expect("saved");
        }
        (s, sent)
    }

    #[test]
    fn restarts_continue_every_seq_once_and_jump_the_clock() {
        let d = tempfile::tempdir().expect("temp dir");
        let (first, mut sent) = run(d.path(), 990, 5);
        assert!(!first.resumed);
        // Restarted at 1_205: interval 20 by the clock.
        let (second, more) = run(d.path(), 1_205, 3);
        assert!(second.resumed);
        // The resend history holds what the first run sent last.
        let last_sent = sent.last().map(|m| m.payload.clone());
        assert!(second
            .recent
            .iter()
            .any(|m| Some(&m.payload) == last_sent.as_ref()));
        sent.extend(more);
        // A third start, without a clock jump (the clock is behind the fleet's).
        let (mut third, more) = run(d.path(), 1_100, 2);
        assert_eq!(third.progress.clock_jumps.len(), 1);
        sent.extend(more);
        sent.extend(third.fleet.release_held());
        // Every (device, seq) was signed with one content only: no equivocation from restarts
        // (the fleet's own equivocating devices aside), and seqs have no gaps.
        let mut seen = std::collections::BTreeMap::new();
        for m in &sent {
            let (Some(key), Expect::Accepted | Expect::Implausible) = (m.key, m.expect) else {
                continue;
            };
            assert!(
                seen.insert(key, m.payload.clone())
                    .is_none_or(|p| p == m.payload),
                "{key:?} signed twice with different content"
            );
        }
        let per_device: std::collections::BTreeMap<_, Vec<u64>> =
            seen.keys().fold(Default::default(), |mut acc, (d, s)| {
                acc.entry(*d).or_insert_with(Vec::new).push(*s);
                acc
            });
        assert_eq!(per_device.len(), 10, "every registered device");
        for (device, seqs) in per_device {
            assert_eq!(
                seqs,
                (0..10).collect::<Vec<_>>(),
                "{device:?}: one seq per step, no gap"
            );
        }
        // Ten steps in all, the clock jumped once, to interval 20.
        assert_eq!(third.fleet.steps_taken(), 10);
        assert_eq!(third.fleet.next_interval(), 25);
        assert_eq!(
            third.progress.clock_jumps,
            vec![ClockJump {
                at_step: 5,
                to_interval: 20
            }]
        );
    }

    #[test]
    fn other_options_an_older_devnet_and_damaged_progress_are_refused() {
        let d = tempfile::tempdir().expect("temp dir");
        run(d.path(), 0, 1);
        let mut other = config();
        other.energy_devices += 1;
        let e = open(d.path(), other, true, 0).err().expect("refused");
        assert!(e.to_string().contains("other fleet options"), "{e}");
        // Another start time alone is not another option (a new one is picked each launch).
        let mut later = config();
        later.start_unix_s += 600;
        assert!(open(d.path(), later, true, 0).is_ok());

        let old = tempfile::tempdir().expect("temp dir");
        std::fs::write(old.path().join("genesis.toml"), "x").expect("write");
        let e = open(old.path(), config(), true, 0).err().expect("refused");
        assert!(e.to_string().contains("cannot be resumed"), "{e}");
        std::fs::write(old.path().join(PROGRESS_FILE), b"{\"fleet\":").expect("write");
        let e = open(old.path(), config(), true, 0).err().expect("refused");
        assert!(e.to_string().contains("damaged"), "{e}");
    }

    #[test]
    fn kept_genesis_must_match_the_options() {
        let d = tempfile::tempdir().expect("temp dir");
        let path = d.path().join("genesis.toml");
        keep_genesis(&path, "a = 1\n", true).expect("a start that failed early writes it");
        std::fs::remove_file(&path).expect("removed");
        keep_genesis(&path, "a = 1\n", false).expect("written");
        keep_genesis(&path, "a = 1\n", true).expect("same genesis resumes");
        let e = keep_genesis(&path, "a = 2\n", true).expect_err("other options");
        assert!(e.to_string().contains("other options"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "a = 1\n");
    }
}
