//! A hostile or buggy client, tried from outside as an attacker would: each
//! module proves one limit of docs/OPERATIONS.md ("Limits and abuse") holds.

mod auth_limits;
mod cancellation;
mod connections;
mod cost;
mod cursors;
mod database_functions;
mod database_outage;
mod inputs;
mod live_authorization;
