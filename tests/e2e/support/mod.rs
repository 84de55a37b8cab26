//! The one support module of the end-to-end tests: key names, handles, the server clock and a typed
//! client shared by every test file, and helpers for the commands, GeoIP, the mirror and the miss path.

pub(crate) mod acl_recipes;
pub(crate) mod change_stream_deletes;
pub(crate) mod commands;
pub(crate) mod daemon_http;
pub(crate) mod geo;
pub(crate) mod mirror;
pub(crate) mod qsess_client;
pub(crate) mod read_through;
pub(crate) mod server_clock;
pub(crate) mod session_keys;
pub(crate) mod session_records;
