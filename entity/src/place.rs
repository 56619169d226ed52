use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Deserialize)]
#[sea_orm(table_name = "place")]
pub struct Model {
    /// The Google Place ID (the seed's key), so imports are idempotent.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lng: f64,
    pub types: Option<String>,
    pub category: Option<String>,
    pub rating: Option<f64>,
    pub user_ratings_total: Option<i32>,
    pub description: Option<String>,
    pub created_at: DateTimeWithTimeZone,
    pub updated_at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::review::Entity")]
    Review,
}

impl Related<super::review::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Review.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
