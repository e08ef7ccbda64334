//! Multi-process end-to-end tests: real brokers, real node processes, real fleets.

mod acceptance;
mod audit;
mod brokers;
mod browser;
mod byzantine;
mod crash;
mod devnet;
mod faults;
mod ingest;
mod ledger;
mod ledger_ingest;
mod oracle;
mod partition;
mod providers;
