//! Postflight collector library.
