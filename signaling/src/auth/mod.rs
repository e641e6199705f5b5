//! Who may do what: join tokens (JWT) and the host credential of the REST API.

mod host;
mod token;

pub use host::{HostCredential, bearer_token};
pub use token::{Claims, Grants, TokenError, Tokens};
