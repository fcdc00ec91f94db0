//! A value that a config reload replaces while handlers and the storage writer keep
//! reading it: each reader takes the current `Arc` and works with that one snapshot.

use std::sync::{Arc, PoisonError, RwLock};

/// A value replaced on reload; readers take the current one.
pub struct Live<T: ?Sized>(RwLock<Arc<T>>);

impl<T: ?Sized> Live<T> {
    /// Starts with `value`.
    pub fn new(value: Arc<T>) -> Live<T> {
        Live(RwLock::new(value))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the value.
    pub fn set(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = value;
    }
}
