//! Parley licensing.
