//! The devnet's L1: a local anvil (installed by `scripts/setup.sh`), the `GroundtruthOracle`
//! contract deployed on it with the genesis validators' L1 addresses and stakes, a funded L1 key
//! per validator, and the `[oracle]` section each validator runs with. The nodes then anchor
//! epochs exactly as in production, over JSON-RPC.

use std::path::Path;

use anyhow::Context;
use groundtruth_ledger::{Genesis, L1Address};
use groundtruth_oracle::anvil::{self, Anvil};
use groundtruth_oracle::{Address, Oracle, PrivateKeySigner, ValidatorSet, B256};

/// Ether each validator's L1 key is funded with (it pays for the transactions it posts).
const FUNDING_WEI: u128 = 100_000_000_000_000_000_000;

/// The devnet's running L1.
pub struct DevnetL1 {
    /// Kept alive: dropping it stops anvil.
    _anvil: Anvil,
    /// JSON-RPC URL.
    pub url: String,
    /// The contract.
    pub contract: Address,
}

/// Validator `i`'s devnet L1 key: a well-known seed, like every devnet key.
pub fn validator_l1_key(i: usize) -> anyhow::Result<PrivateKeySigner> {
    let seed = groundtruth_oracle::keccak256(format!("groundtruth devnet validator {i} l1"));
    Ok(PrivateKeySigner::from_bytes(&seed)?)
}

/// The ledger operator address of devnet validator `i` (operator seed `10 + i`).
fn operator_of(i: usize) -> anyhow::Result<groundtruth_ledger::Address> {
    let seed = 10u8 + u8::try_from(i)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    Ok(groundtruth_ledger::Address(key.verifying_key().to_bytes()))
}

/// Writes each validator's L1 address into `genesis` (validators whose operator is devnet
/// operator `i` get key `i`). Returns the genesis set: (L1 address, stake) per validator.
pub fn add_l1_addresses(genesis: &mut Genesis, n: usize) -> anyhow::Result<Vec<(Address, u64)>> {
    let mut set = Vec::new();
    for i in 0..n {
        let op = operator_of(i)?;
        let key = validator_l1_key(i)?;
        let v = genesis
            .validators
            .iter_mut()
            .find(|v| v.operator == op)
            .with_context(|| format!("the genesis has no validator with devnet operator {i}"))?;
        v.l1_address = Some(L1Address(key.address().into_array()));
        set.push((key.address(), v.stake));
    }
    Ok(set)
}

impl DevnetL1 {
    /// Starts anvil (a block a second, so confirmations accrue), deploys the contract with
    /// `set` accepting epochs from 0, funds the validators' L1 keys and writes key `i` to
    /// `dirs[i]/l1.key`.
    pub fn start(set: &[(Address, u64)], dirs: &[std::path::PathBuf]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            anvil::is_installed(),
            "anvil not found at {}: run scripts/setup.sh (it installs anvil into .tools/) or set {}",
            anvil::binary_path().display(),
            anvil::ANVIL_ENV
        );
        let port = anvil::free_port()?;
        let node = Anvil::spawn_with(port, &["--block-time", "1"])?;
        let url = node.url();
        let genesis_set = ValidatorSet::new(1, set.to_vec())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let contract = runtime.block_on(async {
            let contract = Oracle::deploy(&url, anvil::dev_key(0)?, 0, &genesis_set).await?;
            for (a, _) in set {
                anvil::fund(&url, *a, FUNDING_WEI).await?;
            }
            Ok::<_, groundtruth_oracle::Error>(contract)
        })?;
        for (i, dir) in dirs.iter().enumerate() {
            write_l1_key(&dir.join("l1.key"), &validator_l1_key(i)?)?;
        }
        Ok(Self {
            _anvil: node,
            url,
            contract,
        })
    }

    /// The `[oracle]` section of validator `i`'s config; `apis` are every validator's API.
    pub fn oracle_section(&self, i: usize, dir: &Path, apis: &[String]) -> String {
        let peers: Vec<String> = apis
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| format!("\"{a}\""))
            .collect();
        format!(
            "\n[oracle]\nenabled = true\nl1_rpc = \"{}\"\ncontract = \"{}\"\nl1_key_file = \"{}\"\nconfirmations = 2\npoll = \"1s\"\nfailover = \"20s\"\nhttp_peers = [{}]\n",
            self.url,
            self.contract,
            dir.join("l1.key").display(),
            peers.join(", ")
        )
    }
}

fn write_l1_key(path: &Path, key: &PrivateKeySigner) -> anyhow::Result<()> {
    let secret: B256 = key.to_bytes();
    std::fs::write(path, format!("{secret:x}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
