use sea_orm::entity::prelude::*;

/// An account as requests may read it. The table's `password_hash` column
/// is deliberately absent: viewer roles have no privilege on it (migration
/// 000007), and only the sign-in path reads it, by name, from the sign-in
/// function's row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub full_name: String,
    /// One of admin, service, reader, user (checked by the database).
    pub role: String,
    pub is_active: bool,
    pub created_at: DateTimeWithTimeZone,
    pub last_login: Option<DateTimeWithTimeZone>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::review::Entity")]
    Review,
    #[sea_orm(has_many = "super::preference::Entity")]
    Preference,
}

impl Related<super::review::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Review.def()
    }
}

impl Related<super::preference::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Preference.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
