//! Reassembly of streamed proposals, bounded in streams, parts and bytes so that peers
//! cannot make it grow without limit.

use std::collections::{BTreeMap, VecDeque};

use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::PeerId;
use malachitebft_signing_ed25519::Signature;

use crate::types::{ProposalInit, ProposalPart};

/// A complete, well-formed proposal stream: `Init`, data chunks, `Fin`.
#[derive(Clone, Debug)]
pub(crate) struct Assembled {
    pub init: ProposalInit,
    pub data: Vec<bytes::Bytes>,
    pub signature: Signature,
    /// The parts in order (for storing and restreaming).
    pub parts: Vec<ProposalPart>,
}

impl Assembled {
    /// Checks the shape of an ordered part list.
    pub fn from_parts(parts: Vec<ProposalPart>) -> Option<Self> {
        let (Some(ProposalPart::Init(init)), Some(ProposalPart::Fin(signature))) =
            (parts.first(), parts.last())
        else {
            return None;
        };
        let middle = parts.get(1..parts.len().saturating_sub(1))?;
        let mut data = Vec::with_capacity(middle.len());
        for p in middle {
            match p {
                ProposalPart::Data(d) => data.push(d.clone()),
                _ => return None,
            }
        }
        Some(Self {
            init: init.clone(),
            data,
            signature: *signature,
            parts,
        })
    }
}

#[derive(Default)]
struct StreamState {
    parts: BTreeMap<u64, ProposalPart>,
    fin_seq: Option<u64>,
    bytes: usize,
}

/// Open streams keyed by publisher and stream id.
pub(crate) struct PartStreams {
    streams: BTreeMap<(PeerId, StreamId), StreamState>,
    order: VecDeque<(PeerId, StreamId)>,
    max_streams: usize,
    max_stream_bytes: usize,
}

impl PartStreams {
    pub fn new(max_streams: usize, max_stream_bytes: usize) -> Self {
        Self {
            streams: BTreeMap::new(),
            order: VecDeque::new(),
            max_streams: max_streams.max(1),
            max_stream_bytes,
        }
    }

    /// Adds a message; returns the complete stream once every sequence number up to `Fin`
    /// has arrived. Malformed or oversized streams are dropped (`None`).
    pub fn insert(
        &mut self,
        publisher: PeerId,
        msg: StreamMessage<ProposalPart>,
    ) -> Option<Assembled> {
        let key = (publisher, msg.stream_id.clone());
        if !self.streams.contains_key(&key) {
            while self.streams.len() >= self.max_streams {
                let oldest = self.order.pop_front()?;
                self.streams.remove(&oldest);
            }
            self.streams.insert(key.clone(), StreamState::default());
            self.order.push_back(key.clone());
        }
        let state = self.streams.get_mut(&key)?;

        let size = match &msg.content {
            StreamContent::Data(ProposalPart::Data(d)) => d.len(),
            _ => 0,
        };
        state.bytes = state.bytes.saturating_add(size);
        let max_seq = (self.max_stream_bytes / 64).max(16) as u64;
        let bad = state.bytes > self.max_stream_bytes
            || msg.sequence > max_seq
            || state.fin_seq.is_some_and(|f| msg.sequence > f)
            || (msg.is_fin()
                && state
                    .parts
                    .keys()
                    .next_back()
                    .is_some_and(|&s| s > msg.sequence));
        if bad {
            self.remove(&key);
            return None;
        }
        match msg.content {
            StreamContent::Fin => state.fin_seq = Some(msg.sequence),
            StreamContent::Data(p) => {
                state.parts.entry(msg.sequence).or_insert(p);
            }
        }

        let fin = state.fin_seq?;
        // Parts occupy sequences 0..fin, the stream's Fin marker takes `fin`.
        if state.parts.len() as u64 != fin {
            return None;
        }
        let state = self.remove(&key)?;
        Assembled::from_parts(state.parts.into_values().collect())
    }

    fn remove(&mut self, key: &(PeerId, StreamId)) -> Option<StreamState> {
        self.order.retain(|k| k != key);
        self.streams.remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Address, Height};
    use bytes::Bytes;
    use malachitebft_app_channel::app::types::core::Round;

    fn msgs(id: &'static [u8]) -> Vec<StreamMessage<ProposalPart>> {
        let sid = StreamId::new(Bytes::from_static(id));
        let parts = [
            ProposalPart::Init(ProposalInit {
                height: Height(1),
                round: Round::new(0),
                pol_round: Round::Nil,
                proposer: Address([1; 32]),
            }),
            ProposalPart::Data(Bytes::from_static(b"abc")),
            ProposalPart::Fin(Signature::from_bytes([0; 64])),
        ];
        let mut out: Vec<_> = parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| StreamMessage::new(sid.clone(), i as u64, StreamContent::Data(p)))
            .collect();
        out.push(StreamMessage::new(sid, 3, StreamContent::Fin));
        out
    }

    #[test]
    fn reassembles_out_of_order_and_bounds_streams() {
        let peer = crate::codec::tests::test_peer(1);
        let mut s = PartStreams::new(2, 1024);
        let mut m = msgs(b"a");
        m.reverse();
        let mut done = None;
        for x in m {
            done = s.insert(peer, x).or(done);
        }
        let done = done.expect("complete");
        assert_eq!(done.data, vec![Bytes::from_static(b"abc")]);

        // Many half-open streams never exceed the bound.
        for i in 0..10u8 {
            let sid = StreamId::new(Bytes::from(vec![i]));
            let first = msgs(b"x").remove(0);
            s.insert(peer, StreamMessage::new(sid, 0, first.content));
        }
        assert!(s.streams.len() <= 2 && s.order.len() <= 2);
    }
}
