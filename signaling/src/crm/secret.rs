//! A string that must never reach a log: OAuth tokens, client secrets, webhook secrets and
//! Bitrix24 webhook URLs (their path *is* the credential).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Holds a secret; `Debug` prints a mask and there is no `Display`, so `{:?}` of any struct
/// holding one (configs, token pairs, errors) is safe to log. Read it with [`expose`].
///
/// [`expose`]: SecretString::expose
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString::new(s)
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretString::new("hunter2-token");
        assert_eq!(format!("{s:?}"), "\"***\"");
        #[derive(Debug)]
        #[allow(dead_code)] // only read through Debug
        struct Holder {
            token: SecretString,
        }
        assert!(!format!("{:?}", Holder { token: s }).contains("hunter2"));
    }
}
