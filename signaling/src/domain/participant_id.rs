use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Invalid, random_token};

/// A participant's id within a meeting: `p` followed by 11 letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParticipantId(String);

impl ParticipantId {
    pub fn generate() -> Self {
        ParticipantId(format!("p{}", random_token(11)))
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.len() == 12 && s.starts_with('p') && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(ParticipantId(s.to_owned()))
        } else {
            Err(Invalid(format!("{s:.40?} is not a participant id")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ParticipantId {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        ParticipantId::parse(&s)
    }
}

impl From<ParticipantId> for String {
    fn from(id: ParticipantId) -> String {
        id.0
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let id = ParticipantId::generate();
        assert_eq!(ParticipantId::parse(id.as_str()), Ok(id));
        assert!(ParticipantId::parse("x").is_err());
        assert!(ParticipantId::parse("p12345678901/").is_err());
    }
}
