//! Postflight collector library.

pub mod clock;
pub mod store;
