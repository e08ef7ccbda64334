//! Simulated fleets (to fill).
