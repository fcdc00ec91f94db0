//! Probe configuration (in progress).
