//! The gossipsub topics of the validators' network.

use std::fmt;

use libp2p::gossipsub::{IdentTopic, TopicHash};
use serde::{Deserialize, Serialize};

/// A gossip topic. The set is closed: peers' subscriptions to anything else are filtered out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// Signed ledger transactions for the mempool: `groundtruth/tx/1`.
    Transactions,
    /// Signed readings frames replicated between validators: `groundtruth/readings/1`.
    Readings,
    /// Epoch attestations and signatures: `groundtruth/attest/1`.
    Attestations,
}

impl Topic {
    /// Every topic, in a fixed order.
    pub const ALL: [Topic; 3] = [Topic::Transactions, Topic::Readings, Topic::Attestations];

    /// The gossipsub topic string.
    pub const fn id(self) -> &'static str {
        match self {
            Topic::Transactions => "groundtruth/tx/1",
            Topic::Readings => "groundtruth/readings/1",
            Topic::Attestations => "groundtruth/attest/1",
        }
    }

    pub(crate) fn ident(self) -> IdentTopic {
        IdentTopic::new(self.id())
    }

    pub(crate) fn hash(self) -> TopicHash {
        self.ident().hash()
    }

    pub(crate) fn from_hash(hash: &TopicHash) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.id() == hash.as_str())
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn topic_hashes_round_trip_and_are_distinct() {
        for t in Topic::ALL {
            assert_eq!(Topic::from_hash(&t.hash()), Some(t));
        }
        assert_eq!(Topic::from_hash(&IdentTopic::new("other/1").hash()), None);
        assert_ne!(Topic::Transactions.hash(), Topic::Readings.hash());
    }
}
