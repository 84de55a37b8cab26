//! The end-to-end suite: one test binary whose tests each start their own real redis-server.

mod byuser;
mod change_stream;
mod get_peek_touch;
mod harness_selftest;
mod input_validation;
mod logout_and_revocation;
mod no_raw_ids;
mod operator_surface;
mod postgres_selftest;
mod replication;
mod resp_versions;
mod rotate;
mod session_limit;
mod set_and_new;
mod timeouts;
