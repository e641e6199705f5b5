use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Invalid, random_token};

/// A meeting's public id: 12 lowercase letters and digits, as it appears in `/m/{id}` links.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MeetingId(String);

const LEN: usize = 12;

impl MeetingId {
    pub fn generate() -> Self {
        MeetingId(random_token(LEN).to_ascii_lowercase())
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.len() == LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            Ok(MeetingId(s.to_owned()))
        } else {
            Err(Invalid(format!("{s:.40?} is not a meeting id")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MeetingId {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        MeetingId::parse(&s)
    }
}

impl From<MeetingId> for String {
    fn from(id: MeetingId) -> String {
        id.0
    }
}

impl fmt::Display for MeetingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse() {
        for _ in 0..100 {
            let id = MeetingId::generate();
            assert_eq!(MeetingId::parse(id.as_str()), Ok(id));
        }
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in [
            "",
            "abc",
            "ABCDEFGHIJKL",
            "abcdefghijk/",
            "abcdefghijklm",
            "../../etc/pa",
        ] {
            assert!(MeetingId::parse(bad).is_err(), "{bad}");
        }
    }
}
