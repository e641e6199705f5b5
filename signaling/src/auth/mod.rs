//! Who may do what: join tokens (JWT), the host credential of the REST API, and the operator
//! token, account API keys and account admins' sessions of the licensing API.

mod api_key;
mod host;
pub mod operator_session;
mod token;

pub use api_key::{Caller, IssuedKey, ServiceCredential, issue_key};
pub use host::{HostCredential, bearer_token};
pub use token::{Claims, Grants, TokenError, Tokens};
