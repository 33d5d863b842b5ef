//! Network front end: the listener accepts, each connection frames bytes and keeps
//! responses in request order, dispatch decodes and routes to the handlers, which get a
//! `context` per request.
pub mod api_versions;
pub mod apis;
pub mod connection;
pub mod context;
pub mod dispatch;
pub mod listener;
pub mod response_errors;
pub mod session;
