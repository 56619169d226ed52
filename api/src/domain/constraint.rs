//! A named database constraint and the client error it stands for.

use crate::error::ApiError;

/// A constraint named in a migration with a precise client meaning: its
/// violation becomes this error instead of a generic one. Built in `const`
/// tables, so each domain lists its constraints next to its code.
#[derive(Debug, Clone, Copy)]
pub struct Constraint {
    /// The constraint's name in PostgreSQL.
    pub name: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Conflict { field: &'static str, message: &'static str },
    BadInput { field: &'static str, message: &'static str },
    NotFound { what: &'static str },
}

impl Constraint {
    /// A unique key: CONFLICT on `field`.
    pub const fn conflict(name: &'static str, field: &'static str, message: &'static str) -> Self {
        Self { name, kind: Kind::Conflict { field, message } }
    }

    /// A CHECK: BAD_USER_INPUT on `field`.
    pub const fn bad_input(name: &'static str, field: &'static str, message: &'static str) -> Self {
        Self { name, kind: Kind::BadInput { field, message } }
    }

    /// A foreign key: the referenced `what` is gone or was never visible.
    pub const fn not_found(name: &'static str, what: &'static str) -> Self {
        Self { name, kind: Kind::NotFound { what } }
    }

    pub fn error(&self) -> ApiError {
        match self.kind {
            Kind::Conflict { field, message } => ApiError::conflict(field, message),
            Kind::BadInput { field, message } => ApiError::bad_input(field, message),
            Kind::NotFound { what } => ApiError::not_found(what),
        }
    }
}
