use std::fmt;

use super::Invalid;

/// An email address of a user: trimmed, at most 254 characters (RFC 5321's path limit), one `@`,
/// a local part of 1 to 64 plain characters and a dotted DNS domain. Quoted local parts and IP
/// literals are refused on purpose: nobody signs in with them and they complicate matching.
///
/// Addresses are unique per installation regardless of case, so [`Email::key`] (all lower case)
/// is what the database indexes; [`Email::as_str`] keeps the local part as typed.
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    display: String,
    key: String,
}

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let t = s.trim();
        let bad = |why: &str| Invalid(format!("email {why}"));
        if t.is_empty() {
            return Err(bad("must not be empty"));
        }
        if t.len() > Self::MAX_LEN {
            return Err(bad("must be at most 254 characters"));
        }
        let Some((local, domain)) = t.split_once('@') else {
            return Err(bad("must contain @"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(bad("must have 1 to 64 characters before @"));
        }
        let local_ok = local.chars().all(|c| {
            c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii()
        }) && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && !local.chars().any(char::is_control)
            && !local.chars().any(char::is_whitespace);
        if !local_ok {
            return Err(bad("has characters that are not allowed before @"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !domain_ok {
            return Err(bad("must end in a domain such as example.com"));
        }
        let display = format!("{local}@{}", domain.to_ascii_lowercase());
        let key = display.to_lowercase();
        Ok(Email { display, key })
    }

    /// The address to write to, as the person typed it (domain in lower case).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The case-insensitive identity of the address.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({:?})", self.display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_folds_case_for_the_key() {
        let e = Email::parse("  Anna.Petrova+sales@Example.COM ").expect("valid");
        assert_eq!(e.as_str(), "Anna.Petrova+sales@example.com");
        assert_eq!(e.key(), "anna.petrova+sales@example.com");
        assert_eq!(
            Email::parse("ANNA.PETROVA+SALES@example.com")
                .expect("valid")
                .key(),
            e.key()
        );
    }

    #[test]
    fn refuses_malformed_addresses() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long = format!("a@{}.com", "b".repeat(260));
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@@example.com",
            "a b@example.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-x.com",
            "a@x..com",
            "a@[127.0.0.1]",
            "a\u{0}@example.com",
            long_local.as_str(),
            long.as_str(),
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
