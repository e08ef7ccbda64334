//! Multi-process test builder and benchmark harness (to fill).
