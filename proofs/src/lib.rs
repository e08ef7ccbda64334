//! groundtruth STARK proofs (winterfell 0.13): metered output (which is also the epoch batch
//! proof) and proof of retrievability, with provers, verifiers and a versioned proof envelope.
//!
//! * [`prove_metered`] / [`verify_metered`]: readings of one or many devices in an epoch window,
//!   each within its cap, seqs and intervals contiguous per device, registers advancing by the
//!   interval values, totals summed, all bound to a Rescue-Prime commitment
//!   ([`metered::readings_commitment`]) that anyone holding the signed frames recomputes with
//!   [`commitment_from_readings`].
//! * [`prove_retrievability`] / [`verify_retrievability`]: chunks at seed-derived indices hash to
//!   leaves on paths to a committed Merkle root ([`por::commit_path`] builds it, streaming).
//! * [`ProofEnvelope`]: statement kind, public inputs, security level and proof bytes, with a
//!   stable encoding and a Blake3 digest. [`verify`] checks any envelope.
//! * [`freivalds`]: GPU capacity challenges (seeded random matrices over the Goldilocks field,
//!   the exact product, Freivalds' O(n²) check of a claimed product). Not a STARK: the ledger
//!   accepts its outcomes by a ≥ 2/3 committee.
//!
//! Provers are behind the `prover` feature; verifiers compile without it. Signatures over
//! readings are checked natively by validators, never inside these proofs (see `PROOFS.md`).
//!
//! Must not depend on networking or storage.

mod codec;
pub mod envelope;
pub mod error;
pub mod field;
pub mod freivalds;
mod layout;
pub mod metered;
pub mod options;
pub mod por;
pub mod rescue;
#[cfg(feature = "prover")]
mod trace;

pub use envelope::{ProofEnvelope, Statement, StatementKind};
pub use error::{ProofError, Result};
pub use metered::{
    commitment_from_readings, runs_from_readings, series_from_readings, DeviceSeries, DeviceTotal,
    Epoch, MeteredStatement, ReadingFields,
};
pub use options::SecurityLevel;
pub use por::{Challenge, ChunkOpening, DataCommitment, Response, RetrievabilityStatement};

use envelope::{verify_stark, Shape};

/// Proves metered output for a batch of devices (one device is a device-day proof; many devices
/// make the epoch batch proof). Refuses readings over their cap.
#[cfg(feature = "prover")]
pub fn prove_metered(
    epoch: &Epoch,
    series: &[DeviceSeries],
    level: SecurityLevel,
) -> Result<ProofEnvelope> {
    let statement = MeteredStatement::for_readings(epoch, series)?;
    let pubs = statement.air_inputs()?;
    let options = level.options_for(metered::trace_length(pubs.num_readings));
    let trace = metered::prover::build_trace(series, &pubs);
    let proof = metered::prover::prove_trace(trace, pubs, options)?;
    Ok(ProofEnvelope {
        statement: Statement::MeteredOutput(statement),
        security: level,
        proof,
    })
}

/// Verifies a metered-output envelope and returns its statement.
pub fn verify_metered(envelope: &ProofEnvelope) -> Result<MeteredStatement> {
    let Statement::MeteredOutput(s) = &envelope.statement else {
        return Err(ProofError::WrongStatement {
            expected: StatementKind::MeteredOutput,
            found: envelope.statement.kind(),
        });
    };
    let pubs = s.air_inputs()?;
    let shape = Shape {
        length: metered::trace_length(pubs.num_readings),
        main_width: metered::air::WIDTH,
        aux_width: metered::air::AUX_WIDTH,
        aux_rands: metered::air::AUX_RANDS,
    };
    verify_stark::<metered::air::MeteredAir>(&envelope.proof, envelope.security, shape, pubs)?;
    Ok(s.clone())
}

/// Proves retrievability for a challenge from a response (checked natively first).
#[cfg(feature = "prover")]
pub fn prove_retrievability(
    challenge: &Challenge,
    response: &Response,
    level: SecurityLevel,
) -> Result<ProofEnvelope> {
    challenge.check_response(response)?;
    let statement = RetrievabilityStatement::from(challenge);
    let pubs = statement.air_inputs()?;
    let mut samples = Vec::with_capacity(response.openings.len());
    for o in &response.openings {
        let path = o
            .path
            .iter()
            .map(|p| field::digest_from_bytes(p).ok_or(ProofError::ResponseShape("path digest")))
            .collect::<Result<Vec<_>>>()?;
        samples.push(por::prover::Sample {
            index: o.index,
            chunk: o.chunk.clone(),
            path,
        });
    }
    let options = level.options_for(statement.trace_length());
    let trace = por::prover::build_trace(&samples, challenge.depth as usize);
    let proof = por::prover::prove_trace(trace, pubs, options)?;
    Ok(ProofEnvelope {
        statement: Statement::Retrievability(statement),
        security: level,
        proof,
    })
}

/// Verifies a retrievability envelope and returns its statement.
pub fn verify_retrievability(envelope: &ProofEnvelope) -> Result<RetrievabilityStatement> {
    let Statement::Retrievability(s) = &envelope.statement else {
        return Err(ProofError::WrongStatement {
            expected: StatementKind::Retrievability,
            found: envelope.statement.kind(),
        });
    };
    let pubs = s.air_inputs()?;
    let shape = Shape {
        length: s.trace_length(),
        main_width: por::air::WIDTH,
        aux_width: 0,
        aux_rands: 0,
    };
    verify_stark::<por::air::PorAir>(&envelope.proof, envelope.security, shape, pubs)?;
    Ok(s.clone())
}

/// Verifies any envelope and returns its statement.
pub fn verify(envelope: &ProofEnvelope) -> Result<Statement> {
    match envelope.statement.kind() {
        StatementKind::MeteredOutput => verify_metered(envelope).map(Statement::MeteredOutput),
        StatementKind::Retrievability => {
            verify_retrievability(envelope).map(Statement::Retrievability)
        }
    }
}

/// Decodes envelope bytes and verifies them.
pub fn verify_bytes(bytes: &[u8]) -> Result<(ProofEnvelope, Statement)> {
    let env = ProofEnvelope::from_bytes(bytes)?;
    let statement = verify(&env)?;
    Ok((env, statement))
}
