//! Who sees and changes posts and comments. Mirrors migration 000006:
//! a draft is its author's alone; a published post is visible to every
//! signed-in viewer; a comment wherever its post is visible. Authors change
//! their own posts and comments; a post's author may delete any comment on
//! it; admins everything.

use entity::{comment, post};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use crate::auth::{Role, Viewer, ownership};

pub fn posts_visible_to(viewer: &Viewer) -> Condition {
    match viewer {
        Viewer::Anonymous => ownership::nothing(),
        Viewer::User { role: Role::Admin, .. } => Condition::all(),
        Viewer::User { id, role: Role::User } => {
            Condition::any().add(post::Column::Published.eq(true)).add(post::Column::AuthorId.eq(*id))
        }
        Viewer::User { .. } => Condition::all().add(post::Column::Published.eq(true)),
    }
}

/// The in-memory twin of [`posts_visible_to`], for change events.
pub fn post_visible(viewer: &Viewer, author: Uuid, published: bool) -> bool {
    match viewer {
        Viewer::Anonymous => false,
        Viewer::User { role: Role::Admin, .. } => true,
        Viewer::User { id, role: Role::User } => published || *id == author,
        Viewer::User { .. } => published,
    }
}

pub fn can_write_post(viewer: &Viewer, row: &post::Model) -> bool {
    match viewer {
        Viewer::User { role: Role::Admin, .. } => true,
        Viewer::User { id, role: Role::User } => *id == row.author_id,
        _ => false,
    }
}

/// Comments are added by users and admins to posts they can see.
pub fn can_comment(viewer: &Viewer) -> bool {
    matches!(viewer.role(), Some(Role::User | Role::Admin))
}

pub fn can_delete_comment(viewer: &Viewer, row: &comment::Model, on: &post::Model) -> bool {
    match viewer {
        Viewer::User { role: Role::Admin, .. } => true,
        Viewer::User { id, role: Role::User } => *id == row.author_id || *id == on.author_id,
        _ => false,
    }
}

/// Comments of posts the viewer can see.
pub fn comments_visible_to(viewer: &Viewer) -> Condition {
    match viewer {
        Viewer::Anonymous => ownership::nothing(),
        Viewer::User { role: Role::Admin, .. } => Condition::all(),
        // RLS on `post` applies inside the subquery too.
        _ => Condition::all().add(Expr::cust("EXISTS (SELECT 1 FROM post p WHERE p.id = comment.post_id)")),
    }
}
