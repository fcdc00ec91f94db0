//! Postflight collector library.

pub mod clock;
