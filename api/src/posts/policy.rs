//! Who sees and changes posts and comments. Mirrors migration 000006:
//! a draft is its author's alone; a published post is visible to every
//! signed-in viewer; a comment wherever its post is visible. Users and
//! admins write; authors change their own posts and comments; a post's
//! author may delete any comment on it; admins everything.

use entity::{comment, post};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use crate::auth::{Role, Viewer, ownership};
use crate::domain::Policy;
use crate::error::{ApiError, ApiResult};

pub struct Posts;

impl Policy for Posts {
    type Entity = post::Entity;
    const NAME: &'static str = "post";

    fn visible_to(viewer: &Viewer) -> Condition {
        match viewer {
            Viewer::Anonymous => ownership::nothing(),
            Viewer::User { role: Role::Admin, .. } => Condition::all(),
            Viewer::User { id, role: Role::User } => {
                Condition::any().add(post::Column::Published.eq(true)).add(post::Column::AuthorId.eq(*id))
            }
            Viewer::User { .. } => Condition::all().add(post::Column::Published.eq(true)),
        }
    }

    fn can_write(viewer: &Viewer, row: &post::Model) -> bool {
        is_author_or_admin(viewer, row.author_id)
    }

    /// Readers and services read posts; only people write them.
    fn require_writer(viewer: &Viewer) -> ApiResult<Uuid> {
        viewer.require_role(&[Role::User, Role::Admin], "write posts")
    }

    fn write_denied() -> ApiError {
        ApiError::Forbidden("only the author may change this post".into())
    }
}

pub struct Comments;

impl Policy for Comments {
    type Entity = comment::Entity;
    const NAME: &'static str = "comment";

    /// Comments of posts the viewer can see.
    fn visible_to(viewer: &Viewer) -> Condition {
        match viewer {
            Viewer::Anonymous => ownership::nothing(),
            Viewer::User { role: Role::Admin, .. } => Condition::all(),
            // RLS on `post` applies inside the subquery too.
            _ => Condition::all().add(Expr::cust("EXISTS (SELECT 1 FROM post p WHERE p.id = comment.post_id)")),
        }
    }

    fn can_write(viewer: &Viewer, row: &comment::Model) -> bool {
        is_author_or_admin(viewer, row.author_id)
    }

    /// Comments are added by users and admins to posts they can see.
    fn require_writer(viewer: &Viewer) -> ApiResult<Uuid> {
        viewer.require_role(&[Role::User, Role::Admin], "comment")
    }

    fn write_denied() -> ApiError {
        ApiError::Forbidden("only the comment's or the post's author may delete it".into())
    }
}

/// A comment may also be deleted by the author of the post it is on.
pub fn can_delete_comment(viewer: &Viewer, row: &comment::Model, on: &post::Model) -> bool {
    Comments::can_write(viewer, row) || is_author_or_admin(viewer, on.author_id)
}

fn is_author_or_admin(viewer: &Viewer, author: Uuid) -> bool {
    match viewer {
        Viewer::User { role: Role::Admin, .. } => true,
        Viewer::User { id, role: Role::User } => *id == author,
        _ => false,
    }
}

/// The in-memory twin of [`Posts::visible_to`], for change events.
pub fn post_visible(viewer: &Viewer, author: Uuid, published: bool) -> bool {
    match viewer {
        Viewer::Anonymous => false,
        Viewer::User { role: Role::Admin, .. } => true,
        Viewer::User { id, role: Role::User } => published || *id == author,
        Viewer::User { .. } => published,
    }
}
