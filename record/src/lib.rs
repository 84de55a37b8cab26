//! The formats shared by the qsess module and the qsess-syncd daemon: handles, the session record,
//! the change record, the key scheme and Redis Cluster's hash slots.
//!
//! Nothing here touches Redis or Postgres. The module writes these bytes and the daemon reads them, so
//! every change to an encoding is a new format version, documented in ARCHITECTURE.md.

#![warn(missing_docs)]

mod change;
mod cluster_slots;
mod device;
mod device_cache;
mod handle;
mod keys;
mod session;
mod user_agent;
mod varint;

pub use change::{ChangeOp, ChangeRecord, DeleteReason, ParseChangeError, UserRevocation};
pub use cluster_slots::{key_slot, slot_of_tag, slot_tag, SLOT_COUNT};
pub use device::{device_summary, MAX_DEVICE_LEN};
pub use device_cache::cached_device_summary;
pub use handle::{Handle, InvalidHandle, HANDLE_LEN};
pub use keys::{validate_prefix, BucketTags, KeyNames, UserRevocationValue, MARKER_VALUE};
pub use session::{DecodeError, SessionRecord, RECORD_FORMAT_V1, RECORD_FORMAT_V2, RECORD_FORMAT_V3};
pub use user_agent::{is_packed_user_agent, pack_user_agent, UserAgent};
