//! Network front end: the listener accepts, each connection frames bytes and keeps
//! responses in request order, dispatch decodes and routes to the handlers.
pub mod api_versions;
pub mod connection;
pub mod dispatch;
pub mod listener;
pub mod response_errors;
