//! A real L1 for a test network ([`crate::TestNetBuilder::l1`]): anvil with the
//! `GroundtruthOracle` contract deployed for the genesis validators' L1 keys, set up by the
//! same code as the devnet ([`groundtruth_node::oracle::devnet`]), and every validator running
//! its `[oracle]` service with short polls and failover. [`L1`] reads back what the chain
//! itself holds: `nextEpoch`, the stored commitment hashes and every `EpochAnchored` log.

use anyhow::{anyhow, Context, Result};
use groundtruth_node::oracle::devnet::{self, DevnetL1, L1_KEY_FILE};
use groundtruth_node::oracle::OracleSection;
use groundtruth_oracle::bindings::GroundtruthOracle;
use groundtruth_oracle::{anvil, Oracle};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use groundtruth_oracle::{Address, EpochCommitment, B256};

/// How often the validators' oracle services read L1 and the ledger in a test network.
const POLL: Duration = Duration::from_millis(200);
/// How long L1 may stand still on a ready epoch before the next validator in line posts.
const FAILOVER: Duration = Duration::from_secs(4);

/// Why a test network cannot have an L1 here (anvil is not installed), or `None`.
pub fn l1_unavailable() -> Option<String> {
    (!anvil::is_installed()).then(|| {
        format!(
            "anvil not found at {} (run scripts/setup.sh or set {})",
            anvil::binary_path().display(),
            anvil::ANVIL_ENV
        )
    })
}

/// One `EpochAnchored` log of the contract, as `eth_getLogs` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredLog {
    /// The commitment the event carries.
    pub commitment: EpochCommitment,
    /// The block holding it.
    pub block: u64,
    /// The anchoring transaction.
    pub tx: B256,
}

/// The network's L1: anvil and the deployed contract; anvil stops when it is dropped.
pub struct L1 {
    devnet: DevnetL1,
    reader: Oracle,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for L1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1")
            .field("url", &self.devnet.url)
            .field("contract", &self.devnet.contract)
            .finish_non_exhaustive()
    }
}

impl L1 {
    /// Gives the first `n` devnet validators of the genesis at `genesis_path` their devnet L1
    /// addresses (rewriting the file), starts anvil, deploys the contract for them, funds
    /// their keys and writes key `i` into `dirs[i]`.
    pub(crate) fn start(genesis_path: &Path, dirs: &[PathBuf]) -> Result<Self> {
        let text = std::fs::read_to_string(genesis_path)?;
        let mut genesis = groundtruth_ledger::Genesis::from_toml(&text)
            .map_err(|e| anyhow!("genesis for the L1: {e}"))?;
        let set = devnet::add_l1_addresses(&mut genesis, dirs.len())?;
        // Only the addresses are written into the file: the rest stays as the test gave it.
        let mut table: toml::Table = text.parse()?;
        if let Some(toml::Value::Array(entries)) = table.get_mut("validators") {
            for (entry, v) in entries.iter_mut().zip(&genesis.validators) {
                if let (toml::Value::Table(t), Some(a)) = (entry, v.l1_address) {
                    t.insert("l1_address".into(), toml::Value::try_from(a)?);
                }
            }
        }
        std::fs::write(genesis_path, toml::to_string(&table)?)?;
        let devnet = DevnetL1::start(&set, dirs)?;
        let mut config = groundtruth_oracle::Config::new(devnet.url.clone(), devnet.contract);
        config.confirmations = 1;
        let reader = Oracle::new(config, anvil::dev_key(2)?)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            devnet,
            reader,
            runtime,
        })
    }

    /// The `[oracle]` section of the validator whose directory is `dir`; `peers` are the
    /// other validators' APIs.
    pub(crate) fn oracle_section(&self, dir: &Path, peers: Vec<String>) -> OracleSection {
        OracleSection {
            enabled: true,
            l1_rpc: self.devnet.url.clone(),
            contract: Some(self.devnet.contract),
            l1_key_file: Some(dir.join(L1_KEY_FILE)),
            confirmations: 1,
            poll: POLL,
            failover: FAILOVER,
            receipt_timeout: Duration::from_secs(10),
            http_peers: peers,
        }
    }

    /// Its JSON-RPC URL.
    pub fn url(&self) -> &str {
        &self.devnet.url
    }

    /// The contract's address.
    pub fn contract(&self) -> Address {
        self.devnet.contract
    }

    /// How long the validators wait on a standing L1 before the next one in line posts.
    pub fn failover(&self) -> Duration {
        FAILOVER
    }

    /// The epoch the contract accepts next.
    pub fn next_epoch(&self) -> Result<u64> {
        Ok(self.runtime.block_on(self.reader.next_epoch())?)
    }

    /// The commitment struct hash the contract stores for `epoch`, if anchored.
    pub fn commitment_hash(&self, epoch: u64) -> Result<Option<B256>> {
        Ok(self.runtime.block_on(self.reader.commitment_hash(epoch))?)
    }

    /// Every `EpochAnchored` log of the contract since block 0, in chain order.
    pub fn anchored_logs(&self) -> Result<Vec<AnchoredLog>> {
        let provider = groundtruth_oracle::provider_for(&self.devnet.url, anvil::dev_key(2)?)?;
        let contract = GroundtruthOracle::new(self.devnet.contract, provider);
        let logs = self
            .runtime
            .block_on(contract.EpochAnchored_filter().from_block(0u64).query())
            .context("eth_getLogs EpochAnchored")?;
        logs.iter()
            .map(|(e, log)| {
                Ok(AnchoredLog {
                    commitment: EpochCommitment::from(e),
                    block: log.block_number.context("log without a block")?,
                    tx: log.transaction_hash.context("log without a transaction")?,
                })
            })
            .collect()
    }

    /// The account that sent transaction `tx` (from its receipt).
    pub fn sender_of(&self, tx: B256) -> Result<Address> {
        use alloy::providers::Provider;
        let provider = groundtruth_oracle::provider_for(&self.devnet.url, anvil::dev_key(2)?)?;
        let receipt = self
            .runtime
            .block_on(provider.get_transaction_receipt(tx))
            .context("eth_getTransactionReceipt")?
            .with_context(|| format!("no receipt for {tx}"))?;
        Ok(receipt.from)
    }

    /// Waits until the contract accepts `epoch` next (every epoch before it anchored).
    pub fn wait_next_epoch(&self, epoch: u64, timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        let mut last = None;
        loop {
            match self.next_epoch() {
                Ok(n) if n >= epoch => return Ok(()),
                Ok(n) => last = Some(n),
                Err(_) => {}
            }
            anyhow::ensure!(
                Instant::now() < until,
                "L1's nextEpoch is {last:?}, wanted {epoch} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
