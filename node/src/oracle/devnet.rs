//! A local L1 for the devnet and the multi-process tests: anvil (installed by
//! `scripts/setup.sh`), the `GroundtruthOracle` contract deployed on it with the genesis
//! validators' L1 addresses and stakes, and a funded, well-known L1 key per validator written
//! next to its config. The validators then anchor epochs exactly as in production, over
//! JSON-RPC. Devnet and tests only: the keys are public.

use std::path::{Path, PathBuf};

use groundtruth_ledger::{Genesis, L1Address};
use groundtruth_oracle::anvil::{self, Anvil};
use groundtruth_oracle::{Address, Oracle, PrivateKeySigner, ValidatorSet, B256};

/// Ether each validator's L1 key is funded with (it pays for the transactions it posts).
const FUNDING_WEI: u128 = 100_000_000_000_000_000_000;

/// The name of a validator's L1 key file in its directory.
pub const L1_KEY_FILE: &str = "l1.key";

/// The kept chain in a devnet's L1 state directory (anvil's state file).
pub const L1_STATE_FILE: &str = "anvil-state.json";

/// The contract's address in a devnet's L1 state directory.
pub const L1_CONTRACT_FILE: &str = "contract";

/// Why the local L1 could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DevnetL1Error {
    /// anvil is not where [`anvil::binary_path`] says.
    #[error("anvil not found at {path}: run scripts/setup.sh (it installs anvil into .tools/) or set {env}", env = anvil::ANVIL_ENV)]
    NotInstalled {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The genesis lacks a devnet validator.
    #[error("the genesis has no validator with devnet operator {0}")]
    NoSuchValidator(usize),
    /// Too many validators for the devnet seeds.
    #[error("no devnet key for validator {0}")]
    TooMany(usize),
    /// A kept L1 state directory does not hold a usable chain.
    #[error(
        "the devnet's kept L1 chain is unusable ({0}); delete the devnet's directory to start over"
    )]
    StateLost(String),
    /// Starting anvil, deploying or funding failed.
    #[error(transparent)]
    Oracle(#[from] groundtruth_oracle::Error),
    /// Writing a key file or starting the runtime failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Validator `i`'s devnet L1 key: a well-known seed, like every devnet key.
pub fn validator_l1_key(i: usize) -> Result<PrivateKeySigner, DevnetL1Error> {
    let seed = groundtruth_oracle::keccak256(format!("groundtruth devnet validator {i} l1"));
    PrivateKeySigner::from_bytes(&seed).map_err(|_| DevnetL1Error::TooMany(i))
}

/// The ledger operator address of devnet validator `i` (operator seed `10 + i`).
fn operator_of(i: usize) -> Result<groundtruth_ledger::Address, DevnetL1Error> {
    let seed = u8::try_from(i)
        .ok()
        .and_then(|i| i.checked_add(10))
        .ok_or(DevnetL1Error::TooMany(i))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    Ok(groundtruth_ledger::Address(key.verifying_key().to_bytes()))
}

/// Writes each validator's L1 address into `genesis` (the validator whose operator is devnet
/// operator `i` gets key `i`). Returns the genesis set: (L1 address, stake) per validator.
pub fn add_l1_addresses(
    genesis: &mut Genesis,
    n: usize,
) -> Result<Vec<(Address, u64)>, DevnetL1Error> {
    let mut set = Vec::new();
    for i in 0..n {
        let op = operator_of(i)?;
        let key = validator_l1_key(i)?;
        let v = genesis
            .validators
            .iter_mut()
            .find(|v| v.operator == op)
            .ok_or(DevnetL1Error::NoSuchValidator(i))?;
        v.l1_address = Some(L1Address(key.address().into_array()));
        set.push((key.address(), v.stake));
    }
    Ok(set)
}

/// A running local L1 with the contract deployed.
#[derive(Debug)]
pub struct DevnetL1 {
    /// Kept alive: dropping it stops anvil.
    _anvil: Anvil,
    /// JSON-RPC URL.
    pub url: String,
    /// The contract.
    pub contract: Address,
}

impl DevnetL1 {
    /// Starts anvil (a block a second, so confirmations accrue), deploys the contract with
    /// `set` accepting epochs from 0, funds the validators' L1 keys and writes key `i` to
    /// `dirs[i]/l1.key` ([`L1_KEY_FILE`]).
    pub fn start(set: &[(Address, u64)], dirs: &[PathBuf]) -> Result<Self, DevnetL1Error> {
        Self::start_in(set, dirs, None)
    }

    /// As [`Self::start`]; with `state_dir`, the chain is kept there ([`L1_STATE_FILE`], and the
    /// contract's address in [`L1_CONTRACT_FILE`]): a later start on the same directory loads
    /// that chain and its contract, with every anchor, instead of deploying a new one.
    pub fn start_in(
        set: &[(Address, u64)],
        dirs: &[PathBuf],
        state_dir: Option<&Path>,
    ) -> Result<Self, DevnetL1Error> {
        if !anvil::is_installed() {
            return Err(DevnetL1Error::NotInstalled {
                path: anvil::binary_path(),
            });
        }
        let io = |what: String| move |source| DevnetL1Error::Io { what, source };
        let port = anvil::free_port()?;
        let (node, kept) = match state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
                let state = dir.join(L1_STATE_FILE);
                let contract_file = dir.join(L1_CONTRACT_FILE);
                let kept = if state.exists() && contract_file.exists() {
                    let text = std::fs::read_to_string(&contract_file)
                        .map_err(io(format!("reading {}", contract_file.display())))?;
                    Some(text.trim().parse::<Address>().map_err(|_| {
                        DevnetL1Error::StateLost(format!(
                            "{} does not hold an address",
                            contract_file.display()
                        ))
                    })?)
                } else {
                    None
                };
                (
                    Anvil::spawn_with_state(port, &state, &["--block-time", "1"])?,
                    kept,
                )
            }
            None => (Anvil::spawn_with(port, &["--block-time", "1"])?, None),
        };
        let url = node.url();
        let genesis_set = ValidatorSet::new(1, set.to_vec())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("starting a runtime".into()))?;
        let contract = match kept {
            Some(contract) => {
                // The kept chain must still hold the contract (a state file from a killed anvil
                // may be older than the contract file).
                let reader = Oracle::new(
                    groundtruth_oracle::Config::new(url.clone(), contract),
                    anvil::dev_key(0)?,
                )?;
                let next = runtime.block_on(reader.next_epoch()).map_err(|e| {
                    DevnetL1Error::StateLost(format!(
                        "the contract {contract} does not answer: {e}"
                    ))
                })?;
                tracing::info!(target: "node::oracle", %contract, next_epoch = next, "devnet L1 resumed");
                contract
            }
            None => {
                let contract = runtime.block_on(async {
                    let contract =
                        Oracle::deploy(&url, anvil::dev_key(0)?, 0, &genesis_set).await?;
                    for (a, _) in set {
                        anvil::fund(&url, *a, FUNDING_WEI).await?;
                    }
                    Ok::<_, groundtruth_oracle::Error>(contract)
                })?;
                if let Some(dir) = state_dir {
                    let path = dir.join(L1_CONTRACT_FILE);
                    std::fs::write(&path, format!("{contract}\n"))
                        .map_err(io(format!("writing {}", path.display())))?;
                }
                contract
            }
        };
        for (i, dir) in dirs.iter().enumerate() {
            write_l1_key(&dir.join(L1_KEY_FILE), &validator_l1_key(i)?)?;
        }
        Ok(Self {
            _anvil: node,
            url,
            contract,
        })
    }
}

fn write_l1_key(path: &Path, key: &PrivateKeySigner) -> Result<(), DevnetL1Error> {
    let io = |source| DevnetL1Error::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    let secret: B256 = key.to_bytes();
    std::fs::write(path, format!("{secret:x}\n")).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_genesis_gets_each_validators_l1_address() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/genesis.toml");
        let text = std::fs::read_to_string(path).expect("devnet genesis");
        let mut g = Genesis::from_toml(&text).expect("parses");
        let set = add_l1_addresses(&mut g, 2).expect("two devnet validators");
        assert_eq!(set.len(), 2);
        let k0 = validator_l1_key(0).expect("key");
        assert_eq!(set.first().map(|(a, _)| *a), Some(k0.address()));
        let with: Vec<_> = g.validators.iter().filter_map(|v| v.l1_address).collect();
        assert_eq!(with.len(), 2, "only the first two got an address");
        assert!(with.contains(&L1Address(k0.address().into_array())));
        assert!(matches!(
            add_l1_addresses(&mut g, 40),
            Err(DevnetL1Error::NoSuchValidator(_))
        ));
    }
}
