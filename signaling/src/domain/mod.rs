//! Values that cannot hold a bad state: parse once at the edge, trust afterwards.

mod display_name;
mod email;
mod meeting_id;
mod meeting_title;
mod participant_id;
mod role;
mod secret;

pub use display_name::DisplayName;
pub use email::Email;
pub use meeting_id::MeetingId;
pub use meeting_title::MeetingTitle;
pub use participant_id::ParticipantId;
pub use role::Role;
pub use secret::{constant_time_eq, random_token};

/// Why a value was refused, phrased for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);
