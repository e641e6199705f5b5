use super::Invalid;

/// A meeting title: 1 to 200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingTitle(String);

impl MeetingTitle {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let t = s.trim();
        let n = t.chars().count();
        if n == 0 {
            return Err(Invalid("title must not be empty".into()));
        }
        if n > Self::MAX_CHARS {
            return Err(Invalid(format!(
                "title must be at most {} characters, got {n}",
                Self::MAX_CHARS
            )));
        }
        if t.chars().any(char::is_control) {
            return Err(Invalid("title must not contain control characters".into()));
        }
        Ok(MeetingTitle(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(
            MeetingTitle::parse("  Demo ").map(|t| t.0),
            Ok("Demo".into())
        );
        assert!(MeetingTitle::parse("   ").is_err());
        assert!(MeetingTitle::parse(&"я".repeat(200)).is_ok());
        assert!(MeetingTitle::parse(&"я".repeat(201)).is_err());
        assert!(MeetingTitle::parse("a\u{0}b").is_err());
    }
}
