use super::Invalid;

/// How a participant is shown to others: 1 to 64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let t = s.trim();
        let n = t.chars().count();
        if n == 0 {
            return Err(Invalid("display name must not be empty".into()));
        }
        if n > Self::MAX_CHARS {
            return Err(Invalid(format!(
                "display name must be at most {} characters, got {n}",
                Self::MAX_CHARS
            )));
        }
        if t.chars().any(char::is_control) {
            return Err(Invalid(
                "display name must not contain control characters".into(),
            ));
        }
        Ok(DisplayName(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(
            DisplayName::parse(" Ann ").map(DisplayName::into_string),
            Ok("Ann".into())
        );
        assert!(DisplayName::parse("").is_err());
        assert!(DisplayName::parse(&"x".repeat(65)).is_err());
        assert!(DisplayName::parse("a\nb").is_err());
    }
}
