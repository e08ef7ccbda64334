//! The devnet's L1: a local anvil with the `GroundtruthOracle` contract, set up by
//! [`groundtruth_node::oracle::devnet`] (shared with the multi-process tests), and the `[oracle]`
//! section each validator runs with. The nodes then anchor epochs exactly as in production,
//! over JSON-RPC.

use std::path::Path;

use groundtruth_node::oracle::devnet::{self, L1_KEY_FILE};
use groundtruth_oracle::Address;

pub use groundtruth_node::oracle::devnet::add_l1_addresses;

/// The devnet's running L1.
pub struct DevnetL1 {
    /// Kept alive: dropping it stops anvil.
    _l1: devnet::DevnetL1,
    /// JSON-RPC URL.
    pub url: String,
    /// The contract.
    pub contract: Address,
}

impl DevnetL1 {
    /// Starts anvil, deploys the contract with `set` accepting epochs from 0, funds the
    /// validators' L1 keys and writes key `i` to `dirs[i]/l1.key`.
    /// The chain is kept in `state_dir`: a devnet started again on it finds its contract and
    /// every anchor.
    pub fn start_in(
        set: &[(Address, u64)],
        dirs: &[std::path::PathBuf],
        state_dir: &Path,
    ) -> anyhow::Result<Self> {
        let l1 = devnet::DevnetL1::start_in(set, dirs, Some(state_dir))?;
        Ok(Self {
            url: l1.url.clone(),
            contract: l1.contract,
            _l1: l1,
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
            dir.join(L1_KEY_FILE).display(),
            peers.join(", ")
        )
    }
}
