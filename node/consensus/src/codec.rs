//! An explicit, versionless binary codec for every message Malachite exchanges or writes to
//! its WAL: big-endian integers, `u32` length prefixes, one tag byte per enum.
//!
//! Decoding is strict (no trailing bytes, every tag checked) and never allocates more than
//! the input could hold, so hostile bytes cannot make it panic or balloon.

use std::ops::RangeInclusive;

use bytes::{BufMut, Bytes, BytesMut};

use malachitebft_app_channel::app::consensus::{LivenessMsg, ProposedValue, SignedConsensusMsg};
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::codec::{Codec, HasEncodedLen};
use malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, ExtendedCommitSignature, NilOrVal, PolkaCertificate, PolkaSignature,
    Round, RoundCertificate, RoundCertificateType, RoundSignature, SignedExtension, SignedMessage,
    SignedProposal, SignedVote, ValidatorProof, Validity, VoteType,
};
use malachitebft_app_channel::app::types::sync::{self, RawDecidedValue};
use malachitebft_app_channel::app::types::PeerId;
use malachitebft_signing_ed25519::Signature;

use crate::error::CodecError;
use crate::types::{
    vote_type_tag, Address, BlockHash, GtContext, Height, Proposal, ProposalInit, ProposalPart,
    Vote,
};

type Ctx = GtContext;

/// Byte writer.
pub(crate) struct Writer(BytesMut);

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self(BytesMut::with_capacity(n))
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.put_u8(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.put_u32(v);
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.put_u64(v);
    }
    pub(crate) fn raw(&mut self, v: &[u8]) {
        self.0.put_slice(v);
    }
    /// A length or count. Lengths above `u32::MAX` cannot be produced by this crate (blocks
    /// and messages are limited far below), so they saturate rather than panic.
    pub(crate) fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.raw(v);
    }
    pub(crate) fn finish(self) -> Bytes {
        self.0.freeze()
    }
}

/// Byte reader over untrusted input.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
    fn take(&mut self, n: usize) -> Result<Bytes, CodecError> {
        if n > self.remaining() {
            return Err(CodecError::Eof);
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let b = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b);
        Ok(out)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    pub(crate) fn bytes(&mut self) -> Result<Bytes, CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A count of items each at least `min_size` bytes long, checked against the input.
    pub(crate) fn count(&mut self, min_size: usize) -> Result<usize, CodecError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.remaining() {
            return Err(CodecError::Eof);
        }
        Ok(n)
    }
    pub(crate) fn end(&self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(CodecError::Trailing(n)),
        }
    }
}

// ---- field encoders -------------------------------------------------------------------

fn put_round(w: &mut Writer, r: Round) {
    w.u64(r.as_i64() as u64);
}

fn get_round(r: &mut Reader) -> Result<Round, CodecError> {
    match r.i64()? {
        -1 => Ok(Round::Nil),
        n => u32::try_from(n)
            .map(Round::new)
            .map_err(|_| CodecError::Invalid("round")),
    }
}

fn put_sig(w: &mut Writer, s: &Signature) {
    w.raw(&s.to_bytes());
}

fn get_sig(r: &mut Reader) -> Result<Signature, CodecError> {
    Ok(Signature::from_bytes(r.array::<64>()?))
}

fn get_addr(r: &mut Reader) -> Result<Address, CodecError> {
    Ok(Address(r.array()?))
}

fn get_hash(r: &mut Reader) -> Result<BlockHash, CodecError> {
    Ok(BlockHash(r.array()?))
}

fn get_height(r: &mut Reader) -> Result<Height, CodecError> {
    Ok(Height(r.u64()?))
}

fn put_nil_or_val(w: &mut Writer, v: &NilOrVal<BlockHash>) {
    match v {
        NilOrVal::Nil => w.u8(0),
        NilOrVal::Val(h) => {
            w.u8(1);
            w.raw(&h.0);
        }
    }
}

fn get_nil_or_val(r: &mut Reader) -> Result<NilOrVal<BlockHash>, CodecError> {
    match r.u8()? {
        0 => Ok(NilOrVal::Nil),
        1 => Ok(NilOrVal::Val(get_hash(r)?)),
        _ => Err(CodecError::Invalid("nil-or-value tag")),
    }
}

fn put_vote_type(w: &mut Writer, t: VoteType) {
    w.u8(vote_type_tag(t));
}

fn get_vote_type(r: &mut Reader) -> Result<VoteType, CodecError> {
    match r.u8()? {
        0 => Ok(VoteType::Prevote),
        1 => Ok(VoteType::Precommit),
        _ => Err(CodecError::Invalid("vote type")),
    }
}

fn put_opt_ext(w: &mut Writer, e: Option<&SignedExtension<Ctx>>) {
    match e {
        None => w.u8(0),
        Some(e) => {
            w.u8(1);
            w.bytes(&e.message);
            put_sig(w, &e.signature);
        }
    }
}

fn get_opt_ext(r: &mut Reader) -> Result<Option<SignedExtension<Ctx>>, CodecError> {
    match r.u8()? {
        0 => Ok(None),
        1 => {
            let message = r.bytes()?;
            let signature = get_sig(r)?;
            Ok(Some(SignedMessage::new(message, signature)))
        }
        _ => Err(CodecError::Invalid("extension tag")),
    }
}

pub(crate) fn put_vote(w: &mut Writer, v: &Vote) {
    put_vote_type(w, v.vote_type);
    w.u64(v.height.0);
    put_round(w, v.round);
    put_nil_or_val(w, &v.value);
    w.raw(&v.validator.0);
    put_opt_ext(w, v.extension.as_ref());
}

pub(crate) fn get_vote(r: &mut Reader) -> Result<Vote, CodecError> {
    Ok(Vote {
        vote_type: get_vote_type(r)?,
        height: get_height(r)?,
        round: get_round(r)?,
        value: get_nil_or_val(r)?,
        validator: get_addr(r)?,
        extension: get_opt_ext(r)?,
    })
}

pub(crate) fn put_proposal(w: &mut Writer, p: &Proposal) {
    w.u64(p.height.0);
    put_round(w, p.round);
    w.raw(&p.value.0);
    put_round(w, p.pol_round);
    w.raw(&p.proposer.0);
}

pub(crate) fn get_proposal(r: &mut Reader) -> Result<Proposal, CodecError> {
    Ok(Proposal {
        height: get_height(r)?,
        round: get_round(r)?,
        value: get_hash(r)?,
        pol_round: get_round(r)?,
        proposer: get_addr(r)?,
    })
}

fn put_signed_vote(w: &mut Writer, v: &SignedVote<Ctx>) {
    put_vote(w, &v.message);
    put_sig(w, &v.signature);
}

fn get_signed_vote(r: &mut Reader) -> Result<SignedVote<Ctx>, CodecError> {
    let vote = get_vote(r)?;
    Ok(SignedMessage::new(vote, get_sig(r)?))
}

fn put_signed_proposal(w: &mut Writer, p: &SignedProposal<Ctx>) {
    put_proposal(w, &p.message);
    put_sig(w, &p.signature);
}

fn get_signed_proposal(r: &mut Reader) -> Result<SignedProposal<Ctx>, CodecError> {
    let p = get_proposal(r)?;
    Ok(SignedMessage::new(p, get_sig(r)?))
}

fn put_part(w: &mut Writer, p: &ProposalPart) {
    match p {
        ProposalPart::Init(i) => {
            w.u8(0);
            w.u64(i.height.0);
            put_round(w, i.round);
            put_round(w, i.pol_round);
            w.raw(&i.proposer.0);
        }
        ProposalPart::Data(d) => {
            w.u8(1);
            w.bytes(d);
        }
        ProposalPart::Fin(s) => {
            w.u8(2);
            put_sig(w, s);
        }
    }
}

fn get_part(r: &mut Reader) -> Result<ProposalPart, CodecError> {
    match r.u8()? {
        0 => Ok(ProposalPart::Init(ProposalInit {
            height: get_height(r)?,
            round: get_round(r)?,
            pol_round: get_round(r)?,
            proposer: get_addr(r)?,
        })),
        1 => Ok(ProposalPart::Data(r.bytes()?)),
        2 => Ok(ProposalPart::Fin(get_sig(r)?)),
        _ => Err(CodecError::Invalid("proposal part tag")),
    }
}

/// Encodes a list of proposal parts (stored for restreaming).
pub(crate) fn encode_parts(parts: &[ProposalPart]) -> Bytes {
    let mut w = Writer::with_capacity(64);
    w.len(parts.len());
    for p in parts {
        put_part(&mut w, p);
    }
    w.finish()
}

/// Decodes a list of proposal parts.
pub(crate) fn decode_parts(bytes: Bytes) -> Result<Vec<ProposalPart>, CodecError> {
    let mut r = Reader::new(bytes);
    let n = r.count(1)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get_part(&mut r)?);
    }
    r.end()?;
    Ok(out)
}

fn put_ext_cert(w: &mut Writer, c: &ExtendedCommitCertificate<Ctx>) {
    w.u64(c.height.0);
    put_round(w, c.round);
    w.raw(&c.value_id.0);
    w.len(c.commit_signatures.len());
    for s in &c.commit_signatures {
        w.raw(&s.address.0);
        put_sig(w, &s.signature);
        put_opt_ext(w, s.extension.as_ref());
    }
}

fn get_ext_cert(r: &mut Reader) -> Result<ExtendedCommitCertificate<Ctx>, CodecError> {
    let height = get_height(r)?;
    let round = get_round(r)?;
    let value_id = get_hash(r)?;
    let n = r.count(97)?;
    let mut commit_signatures = Vec::with_capacity(n);
    for _ in 0..n {
        let address = get_addr(r)?;
        let signature = get_sig(r)?;
        let extension = get_opt_ext(r)?;
        commit_signatures.push(ExtendedCommitSignature::new(address, signature, extension));
    }
    Ok(ExtendedCommitCertificate {
        height,
        round,
        value_id,
        commit_signatures,
    })
}

fn put_polka(w: &mut Writer, c: &PolkaCertificate<Ctx>) {
    w.u64(c.height.0);
    put_round(w, c.round);
    w.raw(&c.value_id.0);
    w.len(c.polka_signatures.len());
    for s in &c.polka_signatures {
        w.raw(&s.address.0);
        put_sig(w, &s.signature);
    }
}

fn get_polka(r: &mut Reader) -> Result<PolkaCertificate<Ctx>, CodecError> {
    let height = get_height(r)?;
    let round = get_round(r)?;
    let value_id = get_hash(r)?;
    let n = r.count(96)?;
    let mut polka_signatures = Vec::with_capacity(n);
    for _ in 0..n {
        let address = get_addr(r)?;
        polka_signatures.push(PolkaSignature::new(address, get_sig(r)?));
    }
    Ok(PolkaCertificate {
        height,
        round,
        value_id,
        polka_signatures,
    })
}

fn put_round_cert(w: &mut Writer, c: &RoundCertificate<Ctx>) {
    w.u64(c.height.0);
    put_round(w, c.round);
    w.u8(match c.cert_type {
        RoundCertificateType::Skip => 0,
        RoundCertificateType::Precommit => 1,
    });
    w.len(c.round_signatures.len());
    for s in &c.round_signatures {
        put_vote_type(w, s.vote_type);
        put_nil_or_val(w, &s.value_id);
        w.raw(&s.address.0);
        put_sig(w, &s.signature);
    }
}

fn get_round_cert(r: &mut Reader) -> Result<RoundCertificate<Ctx>, CodecError> {
    let height = get_height(r)?;
    let round = get_round(r)?;
    let cert_type = match r.u8()? {
        0 => RoundCertificateType::Skip,
        1 => RoundCertificateType::Precommit,
        _ => return Err(CodecError::Invalid("round certificate type")),
    };
    let n = r.count(98)?;
    let mut round_signatures = Vec::with_capacity(n);
    for _ in 0..n {
        let vote_type = get_vote_type(r)?;
        let value_id = get_nil_or_val(r)?;
        let address = get_addr(r)?;
        let signature = get_sig(r)?;
        round_signatures.push(RoundSignature::new(vote_type, value_id, address, signature));
    }
    Ok(RoundCertificate {
        height,
        round,
        cert_type,
        round_signatures,
    })
}

fn put_peer(w: &mut Writer, p: &PeerId) {
    w.bytes(&p.to_bytes());
}

fn get_peer(r: &mut Reader) -> Result<PeerId, CodecError> {
    PeerId::from_bytes(&r.bytes()?).map_err(|_| CodecError::Invalid("peer id"))
}

/// Wraps an encoder/decoder pair into a strict whole-message codec.
fn decode_all<T>(
    bytes: Bytes,
    f: impl FnOnce(&mut Reader) -> Result<T, CodecError>,
) -> Result<T, CodecError> {
    let mut r = Reader::new(bytes);
    let v = f(&mut r)?;
    r.end()?;
    Ok(v)
}

fn encode_with(f: impl FnOnce(&mut Writer)) -> Bytes {
    let mut w = Writer::with_capacity(128);
    f(&mut w);
    w.finish()
}

/// The codec for Malachite's network messages, sync messages and WAL entries.
#[derive(Copy, Clone, Debug, Default)]
pub struct GtCodec;

macro_rules! impl_codec {
    ($t:ty, |$w:ident, $m:ident| $enc:block, |$r:ident| $dec:block) => {
        impl Codec<$t> for GtCodec {
            type Error = CodecError;

            fn decode(&self, bytes: Bytes) -> Result<$t, CodecError> {
                decode_all(bytes, |$r| $dec)
            }

            fn encode(&self, $m: &$t) -> Result<Bytes, CodecError> {
                Ok(encode_with(|$w| $enc))
            }
        }
    };
}

impl_codec!(ProposalPart, |w, m| { put_part(w, m) }, |r| { get_part(r) });

impl_codec!(
    SignedConsensusMsg<Ctx>,
    |w, m| {
        match m {
            SignedConsensusMsg::Vote(v) => {
                w.u8(0);
                put_signed_vote(w, v);
            }
            SignedConsensusMsg::Proposal(p) => {
                w.u8(1);
                put_signed_proposal(w, p);
            }
        }
    },
    |r| {
        match r.u8()? {
            0 => Ok(SignedConsensusMsg::Vote(get_signed_vote(r)?)),
            1 => Ok(SignedConsensusMsg::Proposal(get_signed_proposal(r)?)),
            _ => Err(CodecError::Invalid("consensus message tag")),
        }
    }
);

impl_codec!(
    LivenessMsg<Ctx>,
    |w, m| {
        match m {
            LivenessMsg::Vote(v) => {
                w.u8(0);
                put_signed_vote(w, v);
            }
            LivenessMsg::PolkaCertificate(c) => {
                w.u8(1);
                put_polka(w, c);
            }
            LivenessMsg::SkipRoundCertificate(c) => {
                w.u8(2);
                put_round_cert(w, c);
            }
        }
    },
    |r| {
        match r.u8()? {
            0 => Ok(LivenessMsg::Vote(get_signed_vote(r)?)),
            1 => Ok(LivenessMsg::PolkaCertificate(get_polka(r)?)),
            2 => Ok(LivenessMsg::SkipRoundCertificate(get_round_cert(r)?)),
            _ => Err(CodecError::Invalid("liveness message tag")),
        }
    }
);

impl_codec!(
    StreamMessage<ProposalPart>,
    |w, m| {
        w.bytes(&m.stream_id.to_bytes());
        w.u64(m.sequence);
        match &m.content {
            StreamContent::Data(p) => {
                w.u8(0);
                put_part(w, p);
            }
            StreamContent::Fin => w.u8(1),
        }
    },
    |r| {
        let stream_id = StreamId::new(r.bytes()?);
        let sequence = r.u64()?;
        let content = match r.u8()? {
            0 => StreamContent::Data(get_part(r)?),
            1 => StreamContent::Fin,
            _ => return Err(CodecError::Invalid("stream content tag")),
        };
        Ok(StreamMessage::new(stream_id, sequence, content))
    }
);

impl_codec!(
    ValidatorProof<Ctx>,
    |w, m| {
        w.bytes(&m.public_key);
        w.bytes(&m.peer_id);
        put_sig(w, &m.signature);
    },
    |r| {
        let public_key = r.bytes()?.to_vec();
        let peer_id = r.bytes()?.to_vec();
        let signature = get_sig(r)?;
        Ok(ValidatorProof::new(public_key, peer_id, signature))
    }
);

impl_codec!(
    sync::Status<Ctx>,
    |w, m| {
        put_peer(w, &m.peer_id);
        w.u64(m.tip_height.0);
        w.u64(m.history_min_height.0);
    },
    |r| {
        Ok(sync::Status {
            peer_id: get_peer(r)?,
            tip_height: get_height(r)?,
            history_min_height: get_height(r)?,
        })
    }
);

impl_codec!(
    sync::Request<Ctx>,
    |w, m| {
        let sync::Request::ValueRequest(req) = m;
        w.u8(0);
        w.u64(req.range.start().0);
        w.u64(req.range.end().0);
    },
    |r| {
        match r.u8()? {
            0 => {
                let start = get_height(r)?;
                let end = get_height(r)?;
                let range: RangeInclusive<Height> = start..=end;
                Ok(sync::Request::ValueRequest(
                    malachitebft_sync::ValueRequest::new(range),
                ))
            }
            _ => Err(CodecError::Invalid("sync request tag")),
        }
    }
);

fn put_response(w: &mut Writer, m: &sync::Response<Ctx>) {
    let sync::Response::ValueResponse(resp) = m;
    w.u8(0);
    w.u64(resp.start_height.0);
    w.len(resp.values.len());
    for v in &resp.values {
        w.bytes(&v.value_bytes);
        put_ext_cert(w, &v.certificate);
    }
}

impl_codec!(sync::Response<Ctx>, |w, m| { put_response(w, m) }, |r| {
    match r.u8()? {
        0 => {
            let start_height = get_height(r)?;
            let n = r.count(4 + 8 + 8 + 32 + 4)?;
            let mut values = Vec::with_capacity(n);
            for _ in 0..n {
                let value_bytes = r.bytes()?;
                let certificate = get_ext_cert(r)?;
                values.push(RawDecidedValue::new(value_bytes, certificate));
            }
            Ok(sync::Response::ValueResponse(
                malachitebft_sync::ValueResponse::new(start_height, values),
            ))
        }
        _ => Err(CodecError::Invalid("sync response tag")),
    }
});

impl HasEncodedLen<sync::Response<Ctx>> for GtCodec {
    fn encoded_len(&self, msg: &sync::Response<Ctx>) -> Result<usize, CodecError> {
        Ok(encode_with(|w| put_response(w, msg)).len())
    }
}

impl_codec!(
    ProposedValue<Ctx>,
    |w, m| {
        w.u64(m.height.0);
        put_round(w, m.round);
        put_round(w, m.valid_round);
        w.raw(&m.proposer.0);
        w.raw(&m.value.0);
        w.u8(u8::from(m.validity.is_valid()));
    },
    |r| {
        Ok(ProposedValue {
            height: get_height(r)?,
            round: get_round(r)?,
            valid_round: get_round(r)?,
            proposer: get_addr(r)?,
            value: get_hash(r)?,
            validity: match r.u8()? {
                0 => Validity::Invalid,
                1 => Validity::Valid,
                _ => return Err(CodecError::Invalid("validity")),
            },
        })
    }
);

impl_codec!(PolkaCertificate<Ctx>, |w, m| { put_polka(w, m) }, |r| {
    get_polka(r)
});

/// Encodes an extended commit certificate (for sync responses and the store).
pub(crate) fn encode_ext_cert(c: &ExtendedCommitCertificate<Ctx>) -> Bytes {
    encode_with(|w| put_ext_cert(w, c))
}

/// Decodes an extended commit certificate.
pub(crate) fn decode_ext_cert(bytes: Bytes) -> Result<ExtendedCommitCertificate<Ctx>, CodecError> {
    decode_all(bytes, get_ext_cert)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn test_peer(n: u8) -> PeerId {
        let kp = malachitebft_app_channel::app::types::Keypair::ed25519_from_bytes([n; 32])
            .expect("key");
        PeerId::from_bytes(&kp.public().to_peer_id().to_bytes()).expect("peer id")
    }

    fn sig(b: u8) -> Signature {
        Signature::from_bytes([b; 64])
    }

    fn round_trip<T>(v: T)
    where
        GtCodec: Codec<T>,
        T: PartialEq + std::fmt::Debug,
    {
        let enc = GtCodec.encode(&v).expect("encode");
        let dec: T = GtCodec.decode(enc.clone()).expect("decode");
        assert_eq!(dec, v);
        // Every strict prefix fails cleanly.
        for cut in 0..enc.len() {
            assert!(<GtCodec as Codec<T>>::decode(&GtCodec, enc.slice(..cut)).is_err());
        }
    }

    #[test]
    fn messages_round_trip() {
        let vote = Vote {
            vote_type: VoteType::Precommit,
            height: Height(9),
            round: Round::new(2),
            value: NilOrVal::Val(BlockHash([7; 32])),
            validator: Address([1; 32]),
            extension: None,
        };
        round_trip(SignedConsensusMsg::<Ctx>::Vote(SignedMessage::new(
            vote.clone(),
            sig(3),
        )));
        round_trip(SignedConsensusMsg::<Ctx>::Proposal(SignedMessage::new(
            Proposal {
                height: Height(9),
                round: Round::new(0),
                value: BlockHash([2; 32]),
                pol_round: Round::Nil,
                proposer: Address([4; 32]),
            },
            sig(5),
        )));
        round_trip(StreamMessage::new(
            StreamId::new(Bytes::from_static(b"id")),
            3,
            StreamContent::Data(ProposalPart::Data(Bytes::from_static(b"chunk"))),
        ));
        round_trip(StreamMessage::<ProposalPart>::new(
            StreamId::new(Bytes::from_static(b"id")),
            4,
            StreamContent::Fin,
        ));
        round_trip(LivenessMsg::<Ctx>::SkipRoundCertificate(RoundCertificate {
            height: Height(1),
            round: Round::new(1),
            cert_type: RoundCertificateType::Skip,
            round_signatures: vec![RoundSignature::new(
                VoteType::Prevote,
                NilOrVal::Nil,
                Address([8; 32]),
                sig(9),
            )],
        }));
        round_trip(sync::Response::<Ctx>::ValueResponse(
            malachitebft_sync::ValueResponse::new(
                Height(3),
                vec![RawDecidedValue::new(
                    Bytes::from_static(b"block"),
                    ExtendedCommitCertificate {
                        height: Height(3),
                        round: Round::new(0),
                        value_id: BlockHash([1; 32]),
                        commit_signatures: vec![ExtendedCommitSignature::new(
                            Address([2; 32]),
                            sig(1),
                            None,
                        )],
                    },
                )],
            ),
        ));
        round_trip(sync::Status::<Ctx> {
            peer_id: test_peer(1),
            tip_height: Height(5),
            history_min_height: Height(1),
        });
    }

    #[test]
    fn hostile_lengths_do_not_allocate() {
        // A certificate claiming 2^32-1 signatures in a 60-byte message.
        let mut w = Writer::with_capacity(64);
        w.u64(1);
        w.u64(0);
        w.raw(&[0; 32]);
        w.u32(u32::MAX);
        assert_eq!(decode_ext_cert(w.finish()), Err(CodecError::Eof));
    }
}
