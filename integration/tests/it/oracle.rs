//! Oracle under faults: the anchoring validators killed with `kill -9` while a real L1 runs.
