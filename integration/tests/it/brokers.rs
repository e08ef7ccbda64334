//! The multi-broker layout: validators each embedding a broker, devices spread over them.
