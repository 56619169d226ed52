//! Generated data: `--demo`, a small deterministic set to explore in
//! GraphiQL, and `--scale N`, a benchmark set of the same shape.
//!
//! Rows are written in multi-row INSERTs of `BATCH` rows inside one
//! transaction running as `app_admin`, so seeding goes through row-level
//! security like every other write, and a failed seed leaves nothing behind.
//! Both are idempotent: rows that exist already are skipped. One function
//! per domain (`accounts` first: every other domain's rows belong to its
//! users), each returning what it wrote for the summary line.

use std::io::Write;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, Set, Statement,
    TransactionTrait,
};
use uuid::Uuid;

use crate::auth::hash_password;
use crate::error::ApiError;

/// Rows per INSERT: well under PostgreSQL's 65,535 bind parameters.
const BATCH: usize = 1000;
/// Lisbon, Praça do Comércio: the demo city centre.
const CENTRE: (f64, f64) = (38.7075, -9.1364);
/// The demo users' password (documented in the README).
pub const DEMO_PASSWORD: &str = "demo-password";

const CATEGORIES: [&str; 30] = [
    "cafe",
    "restaurant",
    "bakery",
    "bar",
    "museum",
    "park",
    "gallery",
    "bookstore",
    "viewpoint",
    "beach",
    "market",
    "theater",
    "cinema",
    "library",
    "gym",
    "spa",
    "hotel",
    "hostel",
    "church",
    "monument",
    "garden",
    "zoo",
    "aquarium",
    "nightclub",
    "wine_bar",
    "ice_cream",
    "seafood",
    "vegan",
    "pastry",
    "music_venue",
];
const ADJECTIVES: [&str; 12] =
    ["Golden", "Blue", "Old", "Little", "Grand", "Hidden", "Sunny", "Quiet", "Royal", "Green", "Tiled", "Corner"];
const DEMO_USERS: [(&str, &str); 5] = [
    ("alice", "Alice Almeida"),
    ("bruno", "Bruno Barros"),
    ("carla", "Carla Costa"),
    ("diogo", "Diogo Dias"),
    ("eva", "Eva Esteves"),
];

/// splitmix64: tiny, fast and the same on every platform and version, so
/// the demo set is identical everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(((u128::from(self.next()) << 64) | u128::from(self.next())).to_le_bytes())
            .into_uuid()
    }
}

struct Plan {
    users: usize,
    places: usize,
    reviews_per_user: usize,
    preferences_per_user: usize,
    /// Radius of the city, in degrees of latitude (about 111 km each).
    spread: f64,
    label: &'static str,
}

pub async fn demo(db: &DatabaseConnection) -> Result<String, ApiError> {
    run(
        db,
        Plan {
            users: DEMO_USERS.len(),
            places: 300,
            reviews_per_user: 12,
            preferences_per_user: 5,
            spread: 0.05,
            label: "demo",
        },
    )
    .await
}

pub async fn scale(db: &DatabaseConnection, n: u32) -> Result<String, ApiError> {
    if n == 0 {
        return Err(ApiError::bad_input("scale", "--scale must be at least 1"));
    }
    let users = n as usize;
    let places = 20 * users;
    run(
        db,
        Plan { users, places, reviews_per_user: 100.min(places), preferences_per_user: 5, spread: 0.3, label: "scale" },
    )
    .await
}

async fn run(db: &DatabaseConnection, plan: Plan) -> Result<String, ApiError> {
    let mut rng = Rng(if plan.label == "demo" { 0x5EED } else { 0x5CA1E });
    let tx = db.begin().await?;
    tx.execute_unprepared("SET LOCAL ROLE app_admin").await?;
    let users = accounts(&tx, &mut rng, &plan).await?;
    let done = [
        format!("{} users", users.len()),
        places(&tx, &mut rng, &plan, &users).await?,
        routines(&tx, &mut rng, &users).await?,
        airdrops(&tx, &mut rng, &users).await?,
        posts(&tx, &mut rng, &users).await?,
    ];
    tx.commit().await?;
    Ok(format!(
        "seeded {}: {} (existing rows skipped); password for the users: {DEMO_PASSWORD}",
        plan.label,
        done.join(", ")
    ))
}

/// The accounts domain: `plan.users` users (the demo's five by name), all
/// with [`DEMO_PASSWORD`]; returns their ids.
async fn accounts(tx: &DatabaseTransaction, rng: &mut Rng, plan: &Plan) -> Result<Vec<Uuid>, ApiError> {
    // One hash for all generated accounts: argon2 is slow by design, and
    // these share a documented password anyway.
    let hash = hash_password(DEMO_PASSWORD.to_owned()).await?;
    let user_ids: Vec<Uuid> = (0..plan.users).map(|_| rng.uuid()).collect();
    let accounts: Vec<(String, String, String, String)> = user_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (username, full_name) = match DEMO_USERS.get(i).filter(|_| plan.label == "demo") {
                Some((u, f)) => ((*u).to_owned(), (*f).to_owned()),
                None => (format!("user{i:07}"), format!("User {i}")),
            };
            (id.to_string(), format!("{username}@{}.test", plan.label), username, full_name)
        })
        .collect();
    // Raw SQL: the users entity has no password column (see entity::users).
    insert_batches(tx, "users", accounts, move |tx, batch| {
        let hash = hash.clone();
        Box::pin(async move {
            let mut columns: [Vec<String>; 4] = Default::default();
            for (id, email, username, full_name) in batch {
                for (column, value) in columns.iter_mut().zip([id, email, username, full_name]) {
                    column.push(value);
                }
            }
            let [ids, emails, usernames, names] = columns;
            let done = tx
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "INSERT INTO users (id, email, username, full_name, password_hash)
                     SELECT u.id::uuid, u.email, u.username, u.full_name, $5
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u (id, email, username, full_name)
                     ON CONFLICT DO NOTHING",
                    [ids.into(), emails.into(), usernames.into(), names.into(), hash.into()],
                ))
                .await?;
            Ok(done.rows_affected())
        })
    })
    .await?;
    Ok(user_ids)
}

/// The places domain: places around [`CENTRE`], each user's reviews of
/// consecutive places and their category preferences.
async fn places(tx: &DatabaseTransaction, rng: &mut Rng, plan: &Plan, users: &[Uuid]) -> Result<String, ApiError> {
    use entity::{place, preference, review};
    let place_ids: Vec<String> = (0..plan.places).map(|i| format!("{}-place-{i:06}", plan.label)).collect();
    let places: Vec<_> = place_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let category = CATEGORIES[i % CATEGORIES.len()];
            let (dlat, dlng) = ((rng.unit() * 2.0 - 1.0) * plan.spread, (rng.unit() * 2.0 - 1.0) * plan.spread * 1.28);
            place::ActiveModel {
                id: Set(id.clone()),
                name: Set(format!("{} {} {}", ADJECTIVES[rng.below(ADJECTIVES.len())], title(category), i + 1)),
                lat: Set(CENTRE.0 + dlat),
                lng: Set(CENTRE.1 + dlng),
                types: Set(Some(format!("{category},point_of_interest"))),
                category: Set(Some(category.to_owned())),
                rating: Set(Some((rng.unit() * 40.0).round() / 10.0 + 1.0)),
                user_ratings_total: Set(Some(i32::try_from(rng.below(5000)).unwrap_or(0))),
                description: Set(Some(format!("A {} in Lisbon.", category.replace('_', " ")))),
                ..Default::default()
            }
        })
        .collect();
    insert_rows(tx, "places", places).await?;

    let mut reviews = Vec::with_capacity(users.len() * plan.reviews_per_user);
    let mut preferences = Vec::with_capacity(users.len() * plan.preferences_per_user);
    for user_id in users {
        // Consecutive places from a random start: distinct, as UNIQUE(user_id, place_id) needs.
        let start = rng.below(plan.places);
        for k in 0..plan.reviews_per_user {
            reviews.push(review::ActiveModel {
                user_id: Set(*user_id),
                place_id: Set(place_ids[(start + k) % plan.places].clone()),
                rating: Set(f64::from(u8::try_from(rng.below(11)).unwrap_or(0)) / 2.0),
                comment: Set(Some(format!("Visit {} — would go again.", k + 1))),
                ..Default::default()
            });
        }
        let first_category = rng.below(CATEGORIES.len());
        for k in 0..plan.preferences_per_user {
            preferences.push(preference::ActiveModel {
                user_id: Set(*user_id),
                category: Set(CATEGORIES[(first_category + k * 7) % CATEGORIES.len()].to_owned()),
                rating: Set(f64::from(u8::try_from(rng.below(6)).unwrap_or(0))),
                ..Default::default()
            });
        }
    }
    let (review_count, preference_count) = (reviews.len(), preferences.len());
    insert_rows(tx, "reviews", reviews).await?;
    insert_rows(tx, "preferences", preferences).await?;
    Ok(format!("{} places, {review_count} reviews, {preference_count} preferences", plan.places))
}

/// The routines domain: routines with finished runs (stats follow by trigger).
async fn routines(tx: &DatabaseTransaction, rng: &mut Rng, users: &[Uuid]) -> Result<String, ApiError> {
    use entity::{routine, routine_run};
    const ROUTINES_PER_USER: usize = 2;
    const RUNS_PER_ROUTINE: usize = 5;
    let now = chrono::Utc::now().fixed_offset();
    let routines: Vec<(Uuid, Uuid)> =
        users.iter().flat_map(|u| (0..ROUTINES_PER_USER).map(move |_| *u)).map(|u| (rng.uuid(), u)).collect();
    let rows: Vec<_> = routines
        .iter()
        .enumerate()
        .map(|(i, (id, user))| routine::ActiveModel {
            id: Set(*id),
            user_id: Set(*user),
            name: Set(format!("{} farm {}", ["Daily", "Weekly"][i % 2], i + 1)),
            steps: Set(serde_json::json!([{ "action": "connect_wallet" }, { "action": "swap", "amount": 1 + i % 5 }, { "action": "claim" }])),
            tokens_per_run: Set(i32::try_from(5 + i % 20).unwrap_or(5)),
            ..Default::default()
        })
        .collect();
    insert_rows(tx, "routines", rows).await?;
    let mut runs = Vec::with_capacity(routines.len() * RUNS_PER_ROUTINE);
    for (routine_id, user) in &routines {
        for k in 0..RUNS_PER_ROUTINE {
            let start = now - chrono::Duration::hours(i64::try_from(k * 24 + rng.below(12)).unwrap_or(0) + 1);
            let status = ["success", "success", "partial", "failure"][rng.below(4)];
            runs.push(routine_run::ActiveModel {
                id: Set(rng.uuid()),
                routine_id: Set(*routine_id),
                user_id: Set(*user),
                start_time: Set(start),
                end_time: Set(Some(start + chrono::Duration::minutes(5))),
                status: Set(status.to_owned()),
                tokens_earned: Set(if status == "failure" { 0 } else { i32::try_from(rng.below(20)).unwrap_or(0) }),
            });
        }
    }
    let run_count = runs.len();
    insert_rows(tx, "runs", runs).await?;
    Ok(format!("{} routines, {run_count} runs", routines.len()))
}

/// The airdrops domain: running projects, each user taking part in one.
async fn airdrops(tx: &DatabaseTransaction, rng: &mut Rng, users: &[Uuid]) -> Result<String, ApiError> {
    use entity::{airdrop_project, user_airdrop_participation};
    let today = chrono::Utc::now().date_naive();
    let project_count = (users.len() / 10).max(3);
    let projects: Vec<Uuid> = (0..project_count).map(|_| rng.uuid()).collect();
    let rows: Vec<_> = projects
        .iter()
        .enumerate()
        .map(|(i, id)| airdrop_project::ActiveModel {
            id: Set(*id),
            name: Set(format!("Airdrop {}", i + 1)),
            description: Set(Some("Farm the testnet, earn tokens.".to_owned())),
            start_date: Set(today - chrono::Duration::days(30)),
            end_date: Set(today + chrono::Duration::days(i64::try_from(30 + i).unwrap_or(30))),
            total_token_allocation: Set(1_000_000),
            ..Default::default()
        })
        .collect();
    insert_rows(tx, "projects", rows).await?;
    let rows: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| user_airdrop_participation::ActiveModel {
            id: Set(rng.uuid()),
            user_id: Set(*user),
            project_id: Set(projects[i % projects.len()]),
            tokens_earned: Set(i64::try_from(rng.below(100)).unwrap_or(0)),
            ..Default::default()
        })
        .collect();
    insert_rows(tx, "participations", rows).await?;
    Ok(format!("{project_count} airdrop projects, {} participations", users.len()))
}

/// The posts domain: posts (some drafts) with comments by other users.
async fn posts(tx: &DatabaseTransaction, rng: &mut Rng, users: &[Uuid]) -> Result<String, ApiError> {
    use entity::{comment, post};
    const POSTS_PER_USER: usize = 2;
    const COMMENTS_PER_POST: usize = 2;
    let posts: Vec<(Uuid, Uuid)> =
        users.iter().flat_map(|u| (0..POSTS_PER_USER).map(move |_| *u)).map(|u| (rng.uuid(), u)).collect();
    let rows: Vec<_> = posts
        .iter()
        .enumerate()
        .map(|(i, (id, author))| post::ActiveModel {
            id: Set(*id),
            author_id: Set(*author),
            title: Set(format!("Notes on farming, part {}", i + 1)),
            body: Set("What worked this week, and what did not.".to_owned()),
            // Every other user keeps one draft.
            published: Set(i % 4 != 3),
            ..Default::default()
        })
        .collect();
    insert_rows(tx, "posts", rows).await?;
    let mut comments = Vec::with_capacity(posts.len() * COMMENTS_PER_POST);
    for (post_id, author) in &posts {
        for k in 0..COMMENTS_PER_POST {
            let commenter = users[rng.below(users.len())];
            comments.push(comment::ActiveModel {
                id: Set(rng.uuid()),
                post_id: Set(*post_id),
                author_id: Set(if commenter == *author { users[(k + 1) % users.len()] } else { commenter }),
                body: Set(["Thanks for sharing!", "Same here.", "Which bridge did you use?"][rng.below(3)].to_owned()),
                ..Default::default()
            });
        }
    }
    let comment_count = comments.len();
    insert_rows(tx, "comments", comments).await?;
    Ok(format!("{} posts, {comment_count} comments", posts.len()))
}

/// Inserts entity rows in batches, skipping rows that exist already
/// (`ON CONFLICT DO NOTHING` on any unique constraint): re-seeding is a no-op.
async fn insert_rows<A>(tx: &DatabaseTransaction, what: &str, rows: Vec<A>) -> Result<(), ApiError>
where
    A: ActiveModelTrait + Send + 'static,
{
    insert_batches(tx, what, rows, |tx, batch| {
        Box::pin(async move {
            let skip = OnConflict::new().do_nothing().to_owned();
            A::Entity::insert_many(batch).on_conflict(skip).exec_without_returning(tx).await
        })
    })
    .await
}

type BatchFuture<'a> = std::pin::Pin<Box<dyn Future<Output = Result<u64, sea_orm::DbErr>> + Send + 'a>>;

/// Inserts `rows` in batches, drawing a progress line on stderr.
async fn insert_batches<T: Send + 'static>(
    tx: &DatabaseTransaction,
    what: &str,
    rows: Vec<T>,
    insert: impl for<'a> Fn(&'a DatabaseTransaction, Vec<T>) -> BatchFuture<'a>,
) -> Result<(), ApiError> {
    let total = rows.len();
    let mut done = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let batch: Vec<T> = rows.by_ref().take(BATCH).collect();
        done += batch.len();
        insert(tx, batch).await?;
        eprint!("\r{what:<12} {done:>9}/{total} ({:>3}%)", done * 100 / total.max(1));
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    Ok(())
}

fn title(category: &str) -> String {
    category
        .split('_')
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
