//! Multi-process end-to-end tests: real brokers, real node processes, real fleets.

mod acceptance;
mod audit;
mod browser;
mod byzantine;
mod crash;
mod faults;
mod ingest;
mod ledger;
mod ledger_ingest;
mod partition;
mod providers;
