use async_graphql::{ComplexObject, Context, ID, SimpleObject};
use chrono::{DateTime, FixedOffset};

use super::loader::Totals;
use super::policy::Projects;
use crate::accounts::{User, Users};
use crate::domain::loader::{load, loader, raw_key};
use crate::error::ApiResult;
use crate::graphql::ids::{FromModel, GlobalId, RawId};
use crate::graphql::payload::mutation_input;
use crate::graphql::scalars::{BigInt, Date};

/// A token distribution campaign. Public.
#[derive(SimpleObject, Clone)]
pub struct AirdropProject {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a AirdropProject.
    pub id: GlobalId,
    /// The row's key (what `id` was before this release; foreign keys such
    /// as `userId` hold it).
    pub row_id: RawId,
    /// Display name.
    pub name: String,
    /// Free-text description.
    pub description: Option<String>,
    /// First day of the campaign.
    pub start_date: Date,
    /// Last day of the campaign (not before the first).
    pub end_date: Date,
    /// Tokens the campaign distributes in all.
    pub total_token_allocation: BigInt,
    /// Public totals: how many take part and how much is left.
    pub stats: AirdropStats,
    /// When the project was created.
    pub created_at: DateTime<FixedOffset>,
}

/// Public totals of a project, without anyone's individual share.
#[derive(SimpleObject, Clone, Copy, Default)]
pub struct AirdropStats {
    /// Users taking part.
    pub participants: i64,
    /// Tokens credited so far.
    pub tokens_distributed: BigInt,
    /// Tokens still to distribute.
    pub tokens_left: BigInt,
}

// Built by hand, not derived: its `stats` come from the participations,
// not the row, and without a `From<Model>` no project is served without
// them.
impl AirdropProject {
    pub fn new(m: entity::airdrop_project::Model, participants: i64, tokens_distributed: i64) -> Self {
        Self {
            id: GlobalId::new("AirdropProject", m.id),
            row_id: RawId::from(m.id),
            name: m.name,
            description: m.description,
            start_date: m.start_date.into(),
            end_date: m.end_date.into(),
            stats: AirdropStats {
                participants,
                tokens_distributed: tokens_distributed.into(),
                tokens_left: (m.total_token_allocation - tokens_distributed).max(0).into(),
            },
            total_token_allocation: m.total_token_allocation.into(),
            created_at: m.created_at,
        }
    }
}

/// A user's participation in a project.
#[derive(SimpleObject, FromModel, Clone)]
#[graphql(complex)]
#[from_model(entity::user_airdrop_participation::Model)]
pub struct Participation {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a Participation.
    pub id: GlobalId,
    /// The row's key (what `id` was before this release; foreign keys such
    /// as `userId` hold it).
    pub row_id: RawId,
    /// The participant.
    pub user_id: RawId,
    /// The project.
    pub project_id: RawId,
    /// Tokens credited to this participant.
    pub tokens_earned: BigInt,
    /// When the user joined.
    pub participation_date: DateTime<FixedOffset>,
}

#[ComplexObject]
impl Participation {
    /// The participant (`userId`): null unless the viewer may see that
    /// account (their own, or any as a reader, service or admin). Batched
    /// across the response.
    async fn user(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        Ok(load::<Users>(ctx, raw_key::<uuid::Uuid>(&self.user_id)?).await?.map(User::from))
    }

    /// The project (`projectId`), with its public totals; projects are
    /// public, so null only once it is gone (the event of a participation
    /// deleted with its project). Batched across the response.
    async fn project(&self, ctx: &Context<'_>) -> ApiResult<Option<AirdropProject>> {
        let id = raw_key::<uuid::Uuid>(&self.project_id)?;
        let Some(project) = load::<Projects>(ctx, id).await? else {
            return Ok(None);
        };
        let (participants, distributed) = loader(ctx)?.load_one(Totals(id)).await?.unwrap_or_default();
        Ok(Some(AirdropProject::new(project, participants, distributed)))
    }
}

/// A new project.
#[mutation_input(update = UpdateAirdropProjectInput, fields = AirdropProjectField)]
pub struct CreateAirdropProjectInput {
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// Free-text description.
    pub description: Option<String>,
    /// First day.
    pub start_date: Date,
    /// Last day, not before the first.
    pub end_date: Date,
    /// Tokens to distribute, 0 to 10^15.
    #[input(on_update = "not below what is already distributed")]
    pub total_token_allocation: BigInt,
}

/// The project to join.
#[mutation_input]
pub struct JoinAirdropInput {
    /// The project (it must not have ended).
    pub project_id: ID,
}

/// Tokens to credit to a participation.
#[mutation_input]
pub struct CreditAirdropTokensInput {
    /// The participation credited.
    pub participation_id: ID,
    /// 1 to 10^15, at most what the project has left.
    pub tokens: BigInt,
}

crate::payload!(CreateAirdropProjectPayload, airdrop_project: AirdropProject, "The project as saved.");
crate::payload!(UpdateAirdropProjectPayload, airdrop_project: AirdropProject, "The project as changed.");
crate::payload!(JoinAirdropPayload, participation: Participation, "The new participation.");
crate::payload!(CreditAirdropTokensPayload, participation: Participation, "The participation after the credit.");

crate::connection_type!(AirdropProjectConnection, AirdropProjectEdge, AirdropProject, "airdrop projects");
