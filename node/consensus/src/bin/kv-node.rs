//! A demo validator running a trivial key-value application on groundtruth-consensus.
//!
//! The state root after height `h` is `blake3(root(h-1) ‖ h ‖ txs)`, so equal roots mean
//! equal histories. Every commit prints `COMMIT <height> <root hex> <tx count>` on stdout
//! (the multi-process test reads these lines). The node submits one transaction
//! `<moniker>-<n>=<n>` every `--tx-interval-ms`.
//!
//! ```text
//! kv-node --home DIR --index I --ports P0,P1,P2,P3 [--powers 30,30,20,20]
//!         [--powers-from H:30,30,20,0] [--tx-interval-ms 100]
//! ```
//! `--powers-from` switches the voting powers from height `H` on (an epoch boundary).
//! Validator `I` listens on `127.0.0.1:P_I`; its key is derived from `I`, so every node
//! knows every validator's public key.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use groundtruth_consensus::{
    run, Application, CommitError, ConsensusConfig, DecidedBlock, Evidence, PrivateKey, Timeouts,
    ValidatorInfo,
};

/// The secret key of test validator `index`.
fn validator_key(index: usize) -> [u8; 32] {
    blake3::derive_key("groundtruth kv-node example key", &index.to_be_bytes())
}

struct KvApp {
    validators: Vec<ValidatorInfo>,
    /// From this height on, these validators instead.
    later: Option<(u64, Vec<ValidatorInfo>)>,
    height: u64,
    root: [u8; 32],
    entries: BTreeMap<Bytes, Bytes>,
}

impl Application for KvApp {
    fn validator_set(&self, height: u64) -> Vec<ValidatorInfo> {
        match &self.later {
            Some((from, set)) if height >= *from => set.clone(),
            _ => self.validators.clone(),
        }
    }

    fn validate_block(&self, _height: u64, txs: &[Bytes]) -> bool {
        txs.iter().all(|tx| tx.contains(&b'='))
    }

    fn commit(&mut self, block: &DecidedBlock) -> Result<[u8; 32], CommitError> {
        let mut h = blake3::Hasher::new();
        h.update(&self.root);
        h.update(&block.height.to_be_bytes());
        for tx in &block.txs {
            h.update(&(tx.len() as u64).to_be_bytes());
            h.update(tx);
            if let Some(i) = tx.iter().position(|b| *b == b'=') {
                self.entries.insert(tx.slice(..i), tx.slice(i + 1..));
            }
        }
        self.root = *h.finalize().as_bytes();
        self.height = block.height;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "COMMIT {} {} {}",
            block.height,
            hex(&self.root),
            block.txs.len()
        );
        let _ = out.flush();
        Ok(self.root)
    }

    fn on_misbehavior(&mut self, evidence: Evidence) {
        println!(
            "EVIDENCE {:?} {} {} valid={}",
            evidence.kind,
            hex(&evidence.validator),
            evidence.height,
            evidence.verify()
        );
    }

    fn last_committed(&self) -> Option<(u64, [u8; 32])> {
        // In-memory state: every start replays the block store from height 1.
        (self.height > 0).then_some((self.height, self.root))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Args {
    home: String,
    index: usize,
    ports: Vec<u16>,
    powers: Vec<u64>,
    powers_from: Option<(u64, Vec<u64>)>,
    tx_interval: Duration,
}

fn parse_list<T: std::str::FromStr>(s: &str) -> anyhow::Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(s.split(',')
        .map(str::parse)
        .collect::<Result<Vec<T>, _>>()?)
}

fn parse_args() -> anyhow::Result<Args> {
    let mut home = None;
    let mut index = None;
    let mut ports = None;
    let mut powers = None;
    let mut powers_from = None;
    let mut tx_interval = Duration::from_millis(100);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--home" => home = Some(value),
            "--index" => index = Some(value.parse()?),
            "--ports" => ports = Some(parse_list(&value)?),
            "--powers" => powers = Some(parse_list(&value)?),
            "--powers-from" => {
                let (h, list) = value
                    .split_once(':')
                    .context("--powers-from takes HEIGHT:P0,P1,..")?;
                powers_from = Some((h.parse()?, parse_list(list)?));
            }
            "--tx-interval-ms" => tx_interval = Duration::from_millis(value.parse()?),
            other => bail!("unknown flag {other}"),
        }
    }
    let ports: Vec<u16> = ports.context("--ports is required")?;
    let powers = powers.unwrap_or_else(|| vec![10; ports.len()]);
    if powers.len() != ports.len()
        || powers_from
            .as_ref()
            .is_some_and(|(_, p): &(u64, Vec<u64>)| p.len() != ports.len())
    {
        bail!("--powers, --powers-from and --ports differ in length");
    }
    let index = index.context("--index is required")?;
    if index >= ports.len() {
        bail!("--index out of range");
    }
    Ok(Args {
        home: home.context("--home is required")?,
        index,
        ports,
        powers,
        powers_from,
        tx_interval,
    })
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,consensus=info".into()),
        )
        .init();
    let args = parse_args()?;
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let set = |powers: &[u64]| -> Vec<ValidatorInfo> {
        powers
            .iter()
            .enumerate()
            .map(|(i, power)| ValidatorInfo {
                public_key: *PrivateKey::from(validator_key(i)).public_key().as_bytes(),
                voting_power: *power,
            })
            .collect()
    };
    let validators = set(&args.powers);
    let later = args.powers_from.as_ref().map(|(h, p)| (*h, set(p)));
    let mut config = ConsensusConfig::new(
        &args.home,
        validator_key(args.index),
        addr(args.ports[args.index]),
        args.ports
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != args.index)
            .map(|(_, p)| addr(*p))
            .collect(),
    );
    config.moniker = format!("kv-{}", args.index);
    config.block_time = Some(Duration::from_millis(300));
    config.timeouts = Timeouts {
        propose: Duration::from_millis(1500),
        prevote: Duration::from_millis(500),
        precommit: Duration::from_millis(500),
        rebroadcast: Duration::from_millis(2500),
        ..Timeouts::default()
    };
    config.sync_status_interval = Duration::from_secs(1);

    let app = KvApp {
        validators,
        later,
        height: 0,
        root: [0; 32],
        entries: BTreeMap::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let handle = run(config, app).await?;
        let moniker = format!("kv-{}", args.index);
        let mut n = 0u64;
        let mut ticker = tokio::time::interval(args.tx_interval);
        let mut status = handle.subscribe();
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    n += 1;
                    // A full mempool only delays the demo load; ignore it.
                    let _ = handle.submit_tx(format!("{moniker}-{n}={n}").into_bytes());
                }
                changed = status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        handle.wait().await?;
        Ok(())
    })
}
