//! The API against a real router: hostile writes through `tower::ServiceExt::oneshot`, and
//! the typed client against a real listener.

mod cache;
mod client;
mod market;
mod model;
mod production;
mod router;
