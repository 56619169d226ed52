//! Who sees and changes posts and comments. Mirrors migration 000006:
//! a draft is its author's alone; a published post is visible to every
//! signed-in viewer; a comment wherever its post is visible. Users and
//! admins write; authors change their own posts and comments; a post's
//! author may delete any comment on it; admins everything.

use entity::{comment, post};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::{Role, Viewer, ownership};
use crate::domain::Policy;

pub struct Posts;

impl Policy for Posts {
    type Entity = post::Entity;
    const NAME: &'static str = "post";
    const TYPE: &'static str = "Post";
    const OWNER: Option<post::Column> = Some(post::Column::AuthorId);
    /// Readers and services read posts; only people write them.
    const WRITERS: &'static [Role] = &[Role::User, Role::Admin];
    const DENIED: Option<&'static str> = Some("only the author may change this post");

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

    /// As [`Posts::visible_to`], from the captured row's `published`.
    fn can_read(viewer: &Viewer, author: Option<Uuid>, row: &Value) -> bool {
        let Some((author, published)) = author.zip(row.get("published").and_then(Value::as_bool)) else {
            return false;
        };
        match viewer {
            Viewer::Anonymous => false,
            Viewer::User { role: Role::Admin, .. } => true,
            Viewer::User { id, role: Role::User } => published || *id == author,
            Viewer::User { .. } => published,
        }
    }
}

pub struct Comments;

impl Policy for Comments {
    type Entity = comment::Entity;
    const NAME: &'static str = "comment";
    const TYPE: &'static str = "Comment";
    const OWNER: Option<comment::Column> = Some(comment::Column::AuthorId);
    /// Comments are added by users and admins to posts they can see.
    const WRITERS: &'static [Role] = &[Role::User, Role::Admin];
    const DENIED: Option<&'static str> = Some("only the comment's or the post's author may delete it");

    /// Comments of posts the viewer can see.
    fn visible_to(viewer: &Viewer) -> Condition {
        match viewer {
            Viewer::Anonymous => ownership::nothing(),
            Viewer::User { role: Role::Admin, .. } => Condition::all(),
            // RLS on `post` applies inside the subquery too.
            _ => Condition::all().add(Expr::cust("EXISTS (SELECT 1 FROM post p WHERE p.id = comment.post_id)")),
        }
    }

    /// A comment is visible where its post is, which its row does not say:
    /// only a feed that watches the post (`posts::subscriptions`) can tell.
    fn can_read(_: &Viewer, _: Option<Uuid>, _: &Value) -> bool {
        false
    }
}

/// A comment may also be deleted by the author of the post it is on.
pub fn can_delete_comment(viewer: &Viewer, row: &comment::Model, on: &post::Model) -> bool {
    Comments::can_write(viewer, row) || Posts::can_write(viewer, on)
}
